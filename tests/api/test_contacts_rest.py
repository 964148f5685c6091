"""A peer's own contacts as a FHIR client sees them: search by patient (own contacts only, never a hint about
anyone else's client), versions, conditional update, and cancelling as entered-in-error, queued for the EHR."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from service.auth import Role
from service.store.jobs import Job
from service.store.models import Contact
from tests.api.test_contacts import count_rows
from tests.support.flow import assign, client_with_contact, discharge, peer_contact, register_peer

Auth = Callable[..., dict[str, str]]


def without_links(bundle: dict[str, Any]) -> dict[str, Any]:
    """The Bundle but its links (they repeat the patient asked about)."""
    return {k: v for k, v in bundle.items() if k != "link"}


def ids_of(bundle: dict[str, Any]) -> list[str]:
    return [e["resource"]["id"] for e in bundle.get("entry", [])]


async def test_a_peer_finds_their_own_contacts_with_a_client_and_nothing_else(
    client: httpx.AsyncClient, auth: Auth
) -> None:
    episode, peer, contact = await client_with_contact(client, auth)
    mine = auth(Role.PEER, peer["id"])
    second = await client.post("/fhir/Encounter", json=peer_contact(episode["client_id"], minutes=30), headers=mine)
    found = await client.get("/fhir/Encounter", params={"patient": f"Patient/{episode['client_id']}"}, headers=mine)
    assert found.status_code == 200, found.text
    assert ids_of(found.json()) == [contact["id"], second.json()["id"]]
    assert all(e["resource"]["meta"]["versionId"] == "1" for e in found.json()["entry"])
    first_only = await client.get("/fhir/Encounter", params={"patient": episode["patient"], "_count": 1}, headers=mine)
    assert ids_of(first_only.json()) == [contact["id"]]

    # Another peer asking about this client, and anyone asking about a client that does not exist, get the same
    # empty Bundle: nothing tells them the client exists.
    other = await register_peer(client, auth, "Sam Other")
    theirs = await client.get(
        "/fhir/Encounter", params={"patient": episode["patient"]}, headers=auth(Role.PEER, other["id"])
    )
    nobody = await client.get(
        "/fhir/Encounter", params={"patient": "Patient/nobody"}, headers=auth(Role.PEER, other["id"])
    )
    assert theirs.status_code == nobody.status_code == 200
    empty = {"resourceType": "Bundle", "type": "searchset", "total": 0}
    assert without_links(theirs.json()) == without_links(nobody.json()) == empty


async def test_a_contact_of_a_former_client_stays_the_peers_own(client: httpx.AsyncClient, auth: Auth) -> None:
    episode, peer, contact = await client_with_contact(client, auth)
    successor = await register_peer(client, auth, "Sam Next")
    await assign(client, auth, episode["id"], successor["id"])
    mine = await client.get(
        "/fhir/Encounter", params={"patient": episode["patient"]}, headers=auth(Role.PEER, peer["id"])
    )
    theirs = await client.get(
        "/fhir/Encounter", params={"patient": episode["patient"]}, headers=auth(Role.PEER, successor["id"])
    )
    assert ids_of(mine.json()) == [contact["id"]]
    assert ids_of(theirs.json()) == []


async def test_a_contact_is_corrected_with_if_match_and_a_stale_one_is_refused(
    client: httpx.AsyncClient, auth: Auth, database_url: str
) -> None:
    episode, peer, contact = await client_with_contact(client, auth)
    mine = auth(Role.PEER, peer["id"])
    jobs_before = await count_rows(database_url, Job)
    corrected = peer_contact(episode["client_id"], minutes=45) | {"id": contact["id"]}
    url = f"/fhir/Encounter/{contact['id']}"
    response = await client.put(url, json=corrected, headers=mine | {"If-Match": 'W/"1"'})
    assert response.status_code == 200, response.text
    assert response.json()["length"]["value"] == 45
    assert response.headers["etag"] == 'W/"2"'
    assert await count_rows(database_url, Job) == jobs_before + 1  # the correction is queued for the EHR
    stale = await client.put(
        url,
        json=peer_contact(episode["client_id"], minutes=10) | {"id": contact["id"]},
        headers=mine | {"If-Match": 'W/"1"'},
    )
    assert stale.status_code == 412
    read = await client.get(url, headers=mine)
    assert read.json()["length"]["value"] == 45
    assert (await client.get(f"{url}/_history/2", headers=mine)).json() == read.json()
    assert (await client.get(f"{url}/_history/1", headers=mine)).status_code == 404
    assert await count_rows(database_url, Job) == jobs_before + 1


async def test_a_cancelled_contact_is_entered_in_error_queued_and_stays_cancelled(
    client: httpx.AsyncClient, auth: Auth, database_url: str
) -> None:
    _, peer, contact = await client_with_contact(client, auth)
    mine = auth(Role.PEER, peer["id"])
    jobs_before = await count_rows(database_url, Job)
    url = f"/fhir/Encounter/{contact['id']}"
    cancelled = await client.put(url, json={**contact, "status": "entered-in-error"}, headers=mine)
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "entered-in-error"
    assert await count_rows(database_url, Job) == jobs_before + 1
    revived = await client.put(url, json={**cancelled.json(), "status": "finished"}, headers=mine)
    assert revived.status_code == 422
    assert revived.json()["issue"][0]["expression"] == ["Encounter.status"]
    search = await client.get("/fhir/Encounter", params={"status": "entered-in-error"}, headers=mine)
    assert ids_of(search.json()) == [contact["id"]]


@pytest.mark.parametrize(
    ("change", "status", "expression"),
    [
        ({"status": "in-progress"}, 422, "Encounter.status"),
        ({"id": "another"}, 400, "Encounter.id"),  # R4 http.html, update: a 400
        ({"id": None}, 400, "Encounter.id"),
        ({"subject": {"reference": "Patient/someone-else"}}, 422, "Encounter.subject"),
    ],
)
async def test_an_update_that_makes_no_sense_is_refused_and_changes_nothing(
    client: httpx.AsyncClient, auth: Auth, change: dict[str, Any], status: int, expression: str
) -> None:
    _, peer, contact = await client_with_contact(client, auth)
    mine = auth(Role.PEER, peer["id"])
    url = f"/fhir/Encounter/{contact['id']}"
    response = await client.put(url, json={**contact, **change}, headers=mine)
    assert response.status_code == status, response.text
    assert response.json()["issue"][0]["expression"] == [expression]
    assert (await client.get(url, headers=mine)).json() == contact


async def test_another_peer_cannot_update_or_read_a_contact(client: httpx.AsyncClient, auth: Auth) -> None:
    _, peer, contact = await client_with_contact(client, auth)
    other = await register_peer(client, auth, "Sam Other")
    url = f"/fhir/Encounter/{contact['id']}"
    theirs = auth(Role.PEER, other["id"])
    update = await client.put(url, json={**contact, "status": "entered-in-error"}, headers=theirs)
    missing = await client.put("/fhir/Encounter/nope", json={**contact, "id": "nope"}, headers=theirs)
    assert update.status_code == missing.status_code == 404
    assert (await client.get(f"{url}/_history/1", headers=theirs)).status_code == 404
    assert (await client.get(url, headers=auth(Role.PEER, peer["id"]))).json()["status"] == "finished"


async def test_if_none_exist_on_a_contact_answers_the_one_recorded(
    client: httpx.AsyncClient, auth: Auth, database_url: str
) -> None:
    episode, peer, contact = await client_with_contact(client, auth)
    mine = auth(Role.PEER, peer["id"])
    own = contact["identifier"][0]
    again = await client.post(
        "/fhir/Encounter",
        json=peer_contact(episode["client_id"]),
        headers=mine | {"If-None-Exist": f"identifier={own['system']}|{own['value']}", "Prefer": "return=minimal"},
    )
    assert again.status_code == 200
    assert again.content == b""
    assert again.headers["location"].endswith(f"/Encounter/{contact['id']}/_history/1")
    by_identifier = await client.get(
        "/fhir/Encounter", params={"identifier": f"{own['system']}|{own['value']}"}, headers=mine
    )
    assert ids_of(by_identifier.json()) == [contact["id"]]
    elsewhere = await client.get("/fhir/Encounter", params={"identifier": f"{own['system']}|other"}, headers=mine)
    assert ids_of(elsewhere.json()) == []
    assert await count_rows(database_url, Contact) == 1


async def test_a_peer_without_clients_gets_an_empty_bundle(client: httpx.AsyncClient, auth: Auth) -> None:
    await discharge(client, auth)
    peer = await register_peer(client, auth)
    response = await client.get("/fhir/Encounter", headers=auth(Role.PEER, peer["id"]))
    assert response.status_code == 200
    assert "entry" not in response.json()


async def test_an_identifier_longer_than_peerway_keeps_is_refused_not_cut(
    client: httpx.AsyncClient, auth: Auth, database_url: str
) -> None:
    """Cut to fit its column it would never match again (a retry would store the contact twice); on PostgreSQL it
    did not fit at all (500)."""
    episode, peer, _contact = await client_with_contact(client, auth)
    mine = auth(Role.PEER, peer["id"])
    long_id = [{"system": "https://peer-app.example/contacts", "value": "x" * 400}]
    refused = await client.post(
        "/fhir/Encounter", json=peer_contact(episode["client_id"], identifier=long_id), headers=mine
    )
    assert refused.status_code == 422, refused.text
    assert refused.json()["issue"][0]["expression"] == ["Encounter.identifier"]
    for odd in (f"https://peer-app.example/contacts|{'x' * 400}", "https://peer-app.example/contacts|a%00"):
        criteria = await client.post(
            "/fhir/Encounter",
            json=peer_contact(episode["client_id"]),
            headers=mine | {"If-None-Exist": f"identifier={odd}"},
        )
        assert criteria.status_code == 400, odd  # a NUL reached PostgreSQL as a 500 before
        assert criteria.json()["issue"][0]["expression"] == ["If-None-Exist"]
    assert await count_rows(database_url, Contact) == 1
