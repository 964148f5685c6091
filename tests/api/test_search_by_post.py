"""POST [base]/[type]/_search with the parameters in a form body (FHIR R4 http.html#search) answers what the GET
search answers, to the same caller only; criteria in the body never reach a URL. A body that is not a UTF-8 form
is a 4xx OperationOutcome naming what is wrong."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from service.auth import Role
from tests.support.flow import client_with_contact, register_peer

Auth = Callable[..., dict[str, str]]
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def ids(bundle: dict[str, Any]) -> list[str]:
    return [entry["resource"]["id"] for entry in bundle.get("entry", [])]


async def test_a_peer_finds_the_same_contacts_by_post_as_by_get_and_no_one_elses(
    client: httpx.AsyncClient, auth: Auth
) -> None:
    episode, peer, contact = await client_with_contact(client, auth)
    mine = auth(Role.PEER, peer["id"])
    patient = f"Patient/{episode['client_id']}"

    by_get = await client.get("/fhir/Encounter", params={"patient": patient}, headers=mine)
    by_post = await client.post("/fhir/Encounter/_search", content=f"patient={patient}", headers=mine | FORM)
    assert by_post.status_code == 200, by_post.text
    assert by_post.headers["content-type"].startswith("application/fhir+json")
    assert by_post.json()["type"] == "searchset"
    assert ids(by_post.json()) == ids(by_get.json()) == [contact["id"]]

    # parameters in the URL and in the body make one search
    counted = await client.post(
        "/fhir/Encounter/_search?_summary=count", content=f"patient={patient}", headers=mine | FORM
    )
    assert counted.json()["total"] == 1

    other = await register_peer(client, auth, name="Sam Other")
    theirs = await client.post(
        "/fhir/Encounter/_search", content=f"patient={patient}", headers=auth(Role.PEER, other["id"]) | FORM
    )
    assert theirs.status_code == 200
    assert ids(theirs.json()) == []


async def test_a_coordinator_searches_consents_and_disclosures_by_post(client: httpx.AsyncClient, auth: Auth) -> None:
    episode, peer, _ = await client_with_contact(client, auth)
    patient = f"Patient/{episode['client_id']}"
    assert (await client.get(f"/fhir/{patient}/$peer-summary", headers=auth(Role.PEER, peer["id"]))).status_code == 200
    coordinator = auth(Role.COORDINATOR, "coord")
    for resource_type in ("AuditEvent", "Consent"):
        by_get = await client.get(f"/fhir/{resource_type}", params={"patient": patient}, headers=coordinator)
        by_post = await client.post(
            f"/fhir/{resource_type}/_search", content=f"patient={patient}", headers=coordinator | FORM
        )
        assert by_post.status_code == 200, by_post.text
        assert ids(by_post.json()) == ids(by_get.json())
    disclosures = await client.post(
        "/fhir/AuditEvent/_search", content=f"patient={patient}", headers=coordinator | FORM
    )
    assert len(ids(disclosures.json())) >= 1  # the peer's summary read


@pytest.mark.parametrize(
    ("body", "headers", "status", "expression"),
    [
        (b'{"patient": "Patient/x"}', {"Content-Type": "application/json"}, 415, "Content-Type"),
        (b"patient=Patient/x", {}, 415, "Content-Type"),
        (b"patient=Patient%2Fx%00", FORM, 400, "body.patient"),
        (b"patient=Patient%2F%FF", FORM, 400, "body"),
        (b"patient=\xff", FORM, 400, "body"),
        (b"&".join(b"patient=x" for _ in range(1001)), FORM, 400, "body"),
        (b"name=Halvorson", FORM, 400, "name"),
        (b"patient=Patient/x&_format=application/fhir%2Bxml", FORM, 406, "_format"),
        (b"_count=%C2%B2", FORM, 400, "_count"),  # a superscript two: a digit to str.isdigit, not to int()
        (b"_id=" + b",".join(b"%d" % n for n in range(5001)), FORM, 400, "_id"),
        (b"patient=" + b"x" * 40_000, FORM, 413, ""),
    ],
)
async def test_a_body_that_is_not_a_search_form_is_a_4xx_naming_what(
    client: httpx.AsyncClient, auth: Auth, body: bytes, headers: dict[str, str], status: int, expression: str
) -> None:
    peer = await register_peer(client, auth)
    answer = await client.post("/fhir/Encounter/_search", content=body, headers=auth(Role.PEER, peer["id"]) | headers)
    assert answer.status_code == status, answer.text
    outcome = answer.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0].get("expression", [""]) == [expression]


async def test_the_public_conformance_resources_are_searched_by_post_too(client: httpx.AsyncClient) -> None:
    url = "https://peerway.github.io/fhir/StructureDefinition/peer-contact"
    by_get = await client.get("/fhir/StructureDefinition", params={"url": url})
    by_post = await client.post("/fhir/StructureDefinition/_search", content=f"url={url}", headers=FORM)
    assert by_post.status_code == 200, by_post.text
    assert ids(by_post.json()) == ids(by_get.json()) == ["peer-contact"]
    # no token needed, so no more is read than a request head may hold
    too_large = await client.post("/fhir/StructureDefinition/_search", content=b"url=" + b"x" * 40_000, headers=FORM)
    assert too_large.status_code == 413
