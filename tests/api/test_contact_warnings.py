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


EXPECTED = {
    "Encounter.identifier[0]": "informational",
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

    # A correction is answered the same way.
    corrected = {**sent, "id": encounter["id"]}
    put = await client.put(f"/fhir/Encounter/{encounter['id']}", json=corrected, headers=headers)
    assert put.status_code == 200, put.text
    assert warnings_of(put.json()) == EXPECTED


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
