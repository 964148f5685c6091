"""The peer's consented summary: only what the client agreed to share, with this peer, now; always audited."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fhir.resources.R4B.auditevent import AuditEvent
from fhir.resources.R4B.bundle import Bundle

from service.auth import Role
from tests.conftest import fixture_json
from tests.support.consents import peer_consent
from tests.support.flow import DISCHARGE, assign, discharge, discharged_client_with_peer, register_peer

Auth = Callable[..., dict[str, str]]


async def summary(client: httpx.AsyncClient, auth: Auth, client_id: str, peer_id: str) -> httpx.Response:
    return await client.get(f"/fhir/Patient/{client_id}/$peer-summary", headers=auth(Role.PEER, peer_id))


async def shared(client: httpx.AsyncClient, auth: Auth, client_id: str, peer_id: str) -> dict[str, dict[str, Any]]:
    response = await summary(client, auth, client_id, peer_id)
    assert response.status_code == 200, response.text
    Bundle.model_validate(response.json())
    assert response.json()["type"] == "collection"
    return {e["resource"]["resourceType"]: e["resource"] for e in response.json().get("entry", [])}


async def record(client: httpx.AsyncClient, auth: Auth, consent: dict[str, Any]) -> dict[str, Any]:
    response = await client.post("/fhir/Consent", json=consent, headers=auth(Role.COORDINATOR, "coord"))
    assert response.status_code == 201, response.text
    stored: dict[str, Any] = response.json()
    return stored


async def audit_events(client: httpx.AsyncClient, auth: Auth, patient: str) -> list[dict[str, Any]]:
    response = await client.get("/fhir/AuditEvent", params={"patient": patient}, headers=auth(Role.COORDINATOR))
    assert response.status_code == 200
    return [e["resource"] for e in response.json()["entry"]]


async def test_without_consent_nothing_is_shared_and_the_refusal_is_audited(
    client: httpx.AsyncClient, auth: Auth
) -> None:
    episode, peer = await discharged_client_with_peer(client, auth)
    assert await shared(client, auth, episode["client_id"], peer["id"]) == {}
    [event] = await audit_events(client, auth, episode["patient"])
    AuditEvent.model_validate(event)
    assert event["outcome"] == "4"
    assert event["agent"][0]["who"]["reference"] == peer["practitioner"]


async def test_only_the_consented_categories_are_shared(client: httpx.AsyncClient, auth: Auth) -> None:
    episode, peer = await discharged_client_with_peer(client, auth)
    consent = await record(
        client,
        auth,
        peer_consent(episode["patient"], ["preferred-name", "admission-discharge"], actor=peer["practitioner"]),
    )
    resources = await shared(client, auth, episode["client_id"], peer["id"])
    assert set(resources) == {"Patient", "Encounter"}
    patient = resources["Patient"]
    # Name and language only: no contact details, identifiers, birth date, race, ethnicity or mother's maiden name.
    assert set(patient) == {"resourceType", "id", "name", "communication"}
    assert patient["communication"][0]["language"]["coding"][0]["code"] == "en-US"
    assert patient["id"] == episode["client_id"]
    encounter = resources["Encounter"]
    assert encounter["hospitalization"]["dischargeDisposition"]["coding"][0]["code"] == "1"
    assert encounter["period"]["end"] == "2018-10-23T22:22:15-07:00"
    assert "participant" not in encounter
    assert "type" not in encounter
    assert "reasonCode" not in encounter

    [event] = await audit_events(client, auth, episode["patient"])
    AuditEvent.model_validate(event)
    assert event["outcome"] == "0"
    whats = [e["what"]["reference"] for e in event["entity"] if "what" in e]
    assert f"Consent/{consent['id']}" in whats
    disclosed = {e["type"]["code"] for e in event["entity"] if e.get("description") == "disclosed"}
    withheld = {e["type"]["code"] for e in event["entity"] if e.get("description") == "withheld"}
    assert disclosed == {"preferred-name", "admission-discharge"}
    assert withheld == {"contact-details"}


async def test_a_role_based_consent_follows_whoever_is_assigned(client: httpx.AsyncClient, auth: Auth) -> None:
    episode, peer = await discharged_client_with_peer(client, auth)
    await record(client, auth, peer_consent(episode["patient"], ["contact-details"]))
    patient = (await shared(client, auth, episode["client_id"], peer["id"]))["Patient"]
    assert "telecom" in patient
    assert "name" not in patient
    # The town, not the house: no geolocation, no street lines (the consent names no restricted data).
    assert patient["address"] == [{"city": "Methuen", "country": "US", "postalCode": "01844", "state": "MA"}]


async def test_a_consent_naming_one_peer_shares_nothing_with_the_next(client: httpx.AsyncClient, auth: Auth) -> None:
    episode, first = await discharged_client_with_peer(client, auth)
    await record(client, auth, peer_consent(episode["patient"], ["preferred-name"], actor=first["practitioner"]))
    second = await register_peer(client, auth, "Robin Next")
    await assign(client, auth, episode["id"], second["id"])
    assert await shared(client, auth, episode["client_id"], second["id"]) == {}
    assert (await summary(client, auth, episode["client_id"], first["id"])).status_code == 404


async def test_withdrawal_stops_sharing_on_the_next_request(client: httpx.AsyncClient, auth: Auth) -> None:
    episode, peer = await discharged_client_with_peer(client, auth)
    stored = await record(
        client, auth, peer_consent(episode["patient"], ["preferred-name"], actor=peer["practitioner"])
    )
    assert "Patient" in await shared(client, auth, episode["client_id"], peer["id"])
    stored["status"] = "inactive"
    response = await client.put(f"/fhir/Consent/{stored['id']}", json=stored, headers=auth(Role.COORDINATOR))
    assert response.status_code == 200
    assert response.json()["meta"]["versionId"] == "2"
    assert await shared(client, auth, episode["client_id"], peer["id"]) == {}


async def test_an_expired_consent_shares_nothing(client: httpx.AsyncClient, auth: Auth) -> None:
    episode, peer = await discharged_client_with_peer(client, auth)
    past = datetime.now(UTC) - timedelta(days=30)
    await record(
        client,
        auth,
        peer_consent(
            episode["patient"], ["preferred-name"], actor=peer["practitioner"], start=past, end=past + timedelta(days=7)
        ),
    )
    assert await shared(client, auth, episode["client_id"], peer["id"]) == {}


async def test_restricted_data_is_withheld_unless_the_label_is_permitted(client: httpx.AsyncClient, auth: Auth) -> None:
    bundle = fixture_json(DISCHARGE)
    bundle["entry"][1]["resource"]["meta"]["security"] = [
        {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "PSY"}
    ]
    await client.post("/fhir/$process-message", content=json.dumps(bundle), headers=auth(Role.EHR_SYSTEM, "hospital"))
    [episode] = (await client.get("/api/episodes", headers=auth(Role.COORDINATOR))).json()
    peer = await register_peer(client, auth)
    await assign(client, auth, episode["id"], peer["id"])
    await record(
        client,
        auth,
        peer_consent(episode["patient"], ["preferred-name", "admission-discharge"], actor=peer["practitioner"]),
    )
    assert set(await shared(client, auth, episode["client_id"], peer["id"])) == {"Patient"}


async def test_a_peer_learns_nothing_about_a_client_who_is_not_theirs(client: httpx.AsyncClient, auth: Auth) -> None:
    episode, peer = await discharged_client_with_peer(client, auth)
    await record(client, auth, peer_consent(episode["patient"], ["preferred-name"]))
    stranger = await register_peer(client, auth, "Sam Stranger")
    theirs = await summary(client, auth, episode["client_id"], stranger["id"])
    nobody = await summary(client, auth, "00000000-0000-0000-0000-000000000000", stranger["id"])
    assert theirs.status_code == nobody.status_code == 404

    def strip(response: httpx.Response) -> str:
        text = json.dumps(response.json())
        return text.replace(episode["client_id"], "X").replace("00000000-0000-0000-0000-000000000000", "X")

    assert strip(theirs) == strip(nobody)
    mine = await client.get("/api/me/clients", headers=auth(Role.PEER, stranger["id"]))
    assert mine.json() == []
    assert [
        c["client_id"] for c in (await client.get("/api/me/clients", headers=auth(Role.PEER, peer["id"]))).json()
    ] == [episode["client_id"]]


async def test_consents_are_searchable_by_patient(client: httpx.AsyncClient, auth: Auth) -> None:
    episode = await discharge(client, auth)
    stored = await record(client, auth, peer_consent(episode["patient"], ["interests"]))
    response = await client.get("/fhir/Consent", params={"patient": episode["patient"]}, headers=auth(Role.COORDINATOR))
    Bundle.model_validate(response.json())
    assert [e["resource"]["id"] for e in response.json()["entry"]] == [stored["id"]]
    read = await client.get(f"/fhir/Consent/{stored['id']}", headers=auth(Role.COORDINATOR))
    assert read.json() == stored


@pytest.mark.parametrize(
    ("change", "status", "expression"),
    [
        ({"provision": {"type": "maybe"}}, 400, "Consent.provision.type"),
        ({"patient": {"reference": "Patient/nobody-we-know"}}, 422, "Consent.patient"),
        ({"status": None}, 400, "Consent.status"),
    ],
)
async def test_invalid_consents_are_refused_naming_the_element(
    client: httpx.AsyncClient, auth: Auth, change: dict[str, Any], status: int, expression: str
) -> None:
    episode = await discharge(client, auth)
    consent = peer_consent(episode["patient"], ["preferred-name"]) | change
    consent = {k: v for k, v in consent.items() if v is not None}
    response = await client.post("/fhir/Consent", json=consent, headers=auth(Role.COORDINATOR))
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["issue"][0]["expression"] == [expression]
    listed = await client.get("/fhir/Consent", params={"patient": episode["patient"]}, headers=auth(Role.COORDINATOR))
    assert listed.json()["total"] == 0


async def test_peers_cannot_record_consents(client: httpx.AsyncClient, auth: Auth) -> None:
    episode, peer = await discharged_client_with_peer(client, auth)
    response = await client.post(
        "/fhir/Consent", json=peer_consent(episode["patient"], ["preferred-name"]), headers=auth(Role.PEER, peer["id"])
    )
    assert response.status_code == 403


async def test_put_creates_under_the_callers_id_and_refuses_a_mismatched_one(
    client: httpx.AsyncClient, auth: Auth
) -> None:
    episode = await discharge(client, auth)
    consent = peer_consent(episode["patient"], ["interests"]) | {"id": "from-the-ehr-1"}
    created = await client.put("/fhir/Consent/from-the-ehr-1", json=consent, headers=auth(Role.COORDINATOR))
    assert created.status_code == 201
    assert created.json()["id"] == "from-the-ehr-1"
    assert created.json()["meta"]["versionId"] == "1"
    mismatched = await client.put(
        "/fhir/Consent/from-the-ehr-1", json={**consent, "id": "other"}, headers=auth(Role.COORDINATOR)
    )
    assert mismatched.status_code == 400  # R4 http.html, update: another id, or none, is a 400
    assert mismatched.json()["issue"][0]["expression"] == ["Consent.id"]
    without = {k: v for k, v in consent.items() if k != "id"}
    missing = await client.put("/fhir/Consent/from-the-ehr-1", json=without, headers=auth(Role.COORDINATOR))
    assert (missing.status_code, missing.json()["issue"][0]["expression"]) == (400, ["Consent.id"])


async def test_street_lines_only_when_the_consent_names_restricted_data(client: httpx.AsyncClient, auth: Auth) -> None:
    episode, peer = await discharged_client_with_peer(client, auth)
    consent = peer_consent(episode["patient"], ["contact-details"], actor=peer["practitioner"])
    restricted = {"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}
    consent["provision"]["provision"] = [{"type": "permit", "securityLabel": [restricted]}]
    await record(client, auth, consent)
    patient = (await shared(client, auth, episode["client_id"], peer["id"]))["Patient"]
    # The street to find the client's home, still without the geolocation or any other extension.
    assert patient["address"] == [
        {"line": ["715 Crona Corner"], "city": "Methuen", "country": "US", "postalCode": "01844", "state": "MA"}
    ]
