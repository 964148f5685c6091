"""A peer's app learns what Peerway did not keep of the contact it sent, instead of finding it changed: with
Prefer: return=OperationOutcome as warning issues naming each element, otherwise in a Warning header beside the
stored Encounter. A contact sent as Peerway keeps it gets no warning at all."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from service.auth import Role
from tests.support.flow import discharged_client_with_peer, peer_contact

Auth = Callable[..., dict[str, str]]
V3_PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
APP_ID = {"system": "urn:ietf:rfc:3986", "value": "urn:uuid:5d0c6c1e-0000-4000-8000-000000000001"}


def rewritten_contact(client_id: str, peer_id: str) -> dict[str, Any]:
    """What an app might send: its own identifier, itself as a mere attender, another Practitioner, a class
    that does not fit a community visit, and a location the profile has no place for."""
    contact = peer_contact(
        client_id,
        identifier=[APP_ID],
        participant=[
            {
                "type": [{"coding": [{"system": V3_PARTICIPATION, "code": "ATND"}]}],
                "individual": {"reference": f"Practitioner/{peer_id}"},
            },
            {"individual": {"reference": "Practitioner/dr-someone-else"}},
        ],
        location=[{"location": {"display": "Riverside cafe"}}],
    )
    contact["class"] = {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"}
    return contact


def warnings_of(outcome: dict[str, Any]) -> dict[str, str]:
    return {i["expression"][0]: i["code"] for i in outcome["issue"] if i["severity"] == "warning"}


def notes_of(outcome: dict[str, Any]) -> dict[str, str]:
    return {i["expression"][0]: i["code"] for i in outcome["issue"][1:] if i["severity"] == "information"}


EXPECTED = {
    "Encounter.participant[0].type": "business-rule",
    "Encounter.participant[1]": "business-rule",
    "Encounter.class": "business-rule",
    "Encounter.location": "not-supported",
}


async def test_what_peerway_rewrote_or_refused_is_said_in_the_operation_outcome(
    client: httpx.AsyncClient, auth: Auth
) -> None:
    episode, peer = await discharged_client_with_peer(client, auth)
    headers = auth(Role.PEER, peer["id"], Prefer="return=OperationOutcome")
    sent = rewritten_contact(episode["client_id"], peer["id"])
    answer = await client.post("/fhir/Encounter", json=sent, headers=headers)
    assert answer.status_code == 201, answer.text
    outcome = answer.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["severity"] == "information"
    assert warnings_of(outcome) == EXPECTED
    # The app's identifier is kept for retries (a note, not a warning): it changes nothing the app relies on.
    assert notes_of(outcome) == {"Encounter.identifier[0]": "informational"}
    said = " ".join(i["diagnostics"] for i in outcome["issue"])
    assert "dr-someone-else" not in said
    assert "Riverside" not in said
    assert f"Practitioner/{peer['id']}" in said
    assert "Warning" not in answer.headers

    # The stored contact is what the warnings say: the peer only, as primary performer, Peerway's class.
    stored = await client.get(answer.headers["location"].split("/_history")[0], headers=auth(Role.PEER, peer["id"]))
    encounter = stored.json()
    assert [p["individual"]["reference"] for p in encounter["participant"]] == [f"Practitioner/{peer['id']}"]
    assert encounter["participant"][0]["type"][0]["coding"][0]["code"] == "PPRF"
    assert encounter["class"]["code"] == "FLD"
    assert "location" not in encounter

    # A correction is answered the same way, except that it keeps the identifiers the contact was recorded
    # with: a new one sent with it is said not kept (a later If-None-Exist with it would not find this contact).
    other_id = {"system": "urn:ietf:rfc:3986", "value": "urn:uuid:5d0c6c1e-0000-4000-8000-000000000002"}
    corrected = {**sent, "id": encounter["id"], "identifier": [other_id]}
    put = await client.put(f"/fhir/Encounter/{encounter['id']}", json=corrected, headers=headers)
    assert put.status_code == 200, put.text
    assert warnings_of(put.json()) == EXPECTED | {"Encounter.identifier[0]": "not-supported"}
    assert notes_of(put.json()) == {}


async def test_a_contact_read_and_put_back_as_it_is_gets_no_warning(client: httpx.AsyncClient, auth: Auth) -> None:
    episode, peer = await discharged_client_with_peer(client, auth)
    mine = auth(Role.PEER, peer["id"])
    posted = await client.post("/fhir/Encounter", json=peer_contact(episode["client_id"]), headers=mine)
    assert posted.status_code == 201, posted.text
    read = (await client.get(f"/fhir/Encounter/{posted.json()['id']}", headers=mine)).json()
    assert "partOf" not in read  # the stay is the EHR's Encounter: nothing here an app could follow
    put = await client.put(
        f"/fhir/Encounter/{read['id']}", json=read, headers={**mine, "Prefer": "return=OperationOutcome"}
    )
    assert put.status_code == 200, put.text
    assert [i["severity"] for i in put.json()["issue"]] == ["information"]


async def test_a_retry_with_other_content_says_nothing_was_written(client: httpx.AsyncClient, auth: Auth) -> None:
    episode, peer = await discharged_client_with_peer(client, auth)
    headers = auth(Role.PEER, peer["id"], Prefer="return=OperationOutcome")
    first = await client.post(
        "/fhir/Encounter", json=peer_contact(episode["client_id"], identifier=[APP_ID], minutes=60), headers=headers
    )
    assert first.status_code == 201, first.text
    again = await client.post(
        "/fhir/Encounter", json=peer_contact(episode["client_id"], identifier=[APP_ID], minutes=5), headers=headers
    )
    assert again.status_code == 200, again.text
    issues = again.json()["issue"]
    assert "nothing written" in issues[0]["diagnostics"]
    assert warnings_of(again.json()) == {"Encounter": "duplicate"}
    same = await client.post(
        "/fhir/Encounter", json=peer_contact(episode["client_id"], identifier=[APP_ID], minutes=60), headers=headers
    )
    assert warnings_of(same.json()) == {}  # an exact retry is answered quietly


async def test_the_warning_header_stays_small_however_much_is_not_kept(client: httpx.AsyncClient, auth: Auth) -> None:
    episode, peer = await discharged_client_with_peer(client, auth)
    others = [{"individual": {"reference": f"Practitioner/other-{n}"}} for n in range(300)]
    answer = await client.post(
        "/fhir/Encounter",
        json=peer_contact(episode["client_id"], participant=others),
        headers=auth(Role.PEER, peer["id"]),
    )
    assert answer.status_code == 201, answer.text
    warning = answer.headers["warning"]
    assert len(warning) < 1200  # proxies allow a few KB of headers in all
    assert "more: send Prefer: return=OperationOutcome" in warning


async def test_by_default_the_encounter_comes_back_with_a_warning_header(client: httpx.AsyncClient, auth: Auth) -> None:
    episode, peer = await discharged_client_with_peer(client, auth)
    answer = await client.post(
        "/fhir/Encounter", json=rewritten_contact(episode["client_id"], peer["id"]), headers=auth(Role.PEER, peer["id"])
    )
    assert answer.status_code == 201, answer.text
    assert answer.json()["resourceType"] == "Encounter"
    warning = answer.headers["warning"]
    assert warning.startswith('199 peerway "')
    assert warning.count("199 peerway") == len(EXPECTED)
    assert "a contact names only the peer who records it" in warning


async def test_a_contact_sent_as_peerway_keeps_it_gets_no_warning(client: httpx.AsyncClient, auth: Auth) -> None:
    episode, peer = await discharged_client_with_peer(client, auth)
    mine = auth(Role.PEER, peer["id"])
    plain = await client.post("/fhir/Encounter", json=peer_contact(episode["client_id"]), headers=mine)
    assert plain.status_code == 201, plain.text
    assert "warning" not in plain.headers
    outcome = await client.post(
        "/fhir/Encounter",
        json=peer_contact(episode["client_id"], minutes=30),
        headers={**mine, "Prefer": "return=OperationOutcome"},
    )
    assert [i["severity"] for i in outcome.json()["issue"]] == ["information"]
