"""Consent beyond the summary: EHR-sent Consents, the coordinator's explanation, the CDS Hooks consult and
the accounting of disclosures by date."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

import fhir_profiles
from service.auth import Role
from tests.conftest import fixture_json
from tests.support.consents import peer_consent
from tests.support.flow import DISCHARGE, assign, discharged_client_with_peer, register_peer

Auth = Callable[..., dict[str, str]]
LEAP = "consent/leap-cds-r4-consent-permit-with-deny-R-label.json"


async def record(client: httpx.AsyncClient, auth: Auth, consent: dict[str, Any], role: Role = Role.COORDINATOR) -> Any:
    response = await client.post("/fhir/Consent", json=consent, headers=auth(role, "someone"))
    assert response.status_code == 201, response.text
    return response.json()


async def explain(client: httpx.AsyncClient, auth: Auth, client_id: str, **params: str) -> dict[str, Any]:
    response = await client.get(f"/api/clients/{client_id}/sharing", params=params, headers=auth(Role.COORDINATOR))
    assert response.status_code == 200, response.text
    return {c["category"]: c for c in response.json()["categories"]}


async def test_a_consent_sent_by_the_ehr_is_honoured_like_a_coordinators(client: httpx.AsyncClient, auth: Auth) -> None:
    episode, peer = await discharged_client_with_peer(client, auth)
    # The EHR names the client by its own Patient id.
    ehr_patient = fixture_json(DISCHARGE)["entry"][2]["resource"]["id"]
    await record(client, auth, peer_consent(f"Patient/{ehr_patient}", ["preferred-name"]), role=Role.EHR_SYSTEM)
    summary = await client.get(
        f"/fhir/Patient/{episode['client_id']}/$peer-summary", headers=auth(Role.PEER, peer["id"])
    )
    assert [e["resource"]["resourceType"] for e in summary.json()["entry"]] == ["Patient"]


async def test_the_coordinator_sees_why_each_category_is_or_is_not_shared(
    client: httpx.AsyncClient, auth: Auth
) -> None:
    episode, peer = await discharged_client_with_peer(client, auth)
    stored = await record(
        client, auth, peer_consent(episode["patient"], ["preferred-name"], actor=peer["practitioner"])
    )
    found = await explain(client, auth, episode["client_id"])
    assert set(found) == fhir_profiles.codes(fhir_profiles.DATA_CATEGORY_SYSTEM)
    name = found["preferred-name"]
    assert name["shared"] is True
    assert name["held"] is True
    assert name["consent"] == f"Consent/{stored['id']}"
    assert name["provision"] == "provision"
    contact = found["contact-details"]
    assert contact["shared"] is False
    assert contact["reason"]
    assert found["diagnosis"]["shared"] is False
    assert found["diagnosis"]["held"] is False


async def test_without_any_consent_the_explanation_says_so(client: httpx.AsyncClient, auth: Auth) -> None:
    episode, _ = await discharged_client_with_peer(client, auth)
    found = await explain(client, auth, episode["client_id"])
    assert not any(c["shared"] for c in found.values())
    assert all("no active patient-privacy consent" in c["reason"] for c in found.values())


async def test_the_explanation_can_ask_about_another_peer(client: httpx.AsyncClient, auth: Auth) -> None:
    episode, _ = await discharged_client_with_peer(client, auth)
    await record(client, auth, peer_consent(episode["patient"], ["preferred-name"]))  # the assigned-peer role
    other = await register_peer(client, auth, "Robin Other")
    assert (await explain(client, auth, episode["client_id"]))["preferred-name"]["shared"] is True
    found = await explain(client, auth, episode["client_id"], peer_id=other["id"])
    assert found["preferred-name"]["shared"] is False


async def test_peers_never_get_the_reasons(client: httpx.AsyncClient, auth: Auth) -> None:
    episode, peer = await discharged_client_with_peer(client, auth)
    response = await client.get(f"/api/clients/{episode['client_id']}/sharing", headers=auth(Role.PEER, peer["id"]))
    assert response.status_code == 403
    consult = await client.post("/cds-services/patient-consent-consult", json={}, headers=auth(Role.PEER, peer["id"]))
    assert consult.status_code == 403


def hook(context: dict[str, Any]) -> dict[str, Any]:
    return {
        "hook": "patient-consent-consult",
        "hookInstance": "b1c4c3a0-0000-4000-8000-000000000001",
        "context": context,
    }


async def ask(client: httpx.AsyncClient, auth: Auth, context: dict[str, Any]) -> dict[str, Any]:
    response = await client.post(
        "/cds-services/patient-consent-consult", json=hook(context), headers=auth(Role.EHR_SYSTEM)
    )
    assert response.status_code == 200, response.text
    [card] = response.json()["cards"]
    assert card["summary"] == card["extension"]["decision"]
    assert set(card) >= {"summary", "detail", "indicator", "source", "extension"}
    return dict(card)


async def test_cds_hooks_discovery_lists_the_consult(client: httpx.AsyncClient) -> None:
    services = (await client.get("/cds-services")).json()["services"]
    assert [s["hook"] for s in services] == ["patient-consent-consult"]


async def test_cds_consult_answers_no_consent_permit_and_deny(client: httpx.AsyncClient, auth: Auth) -> None:
    episode, peer = await discharged_client_with_peer(client, auth)
    peer_id = {"system": fhir_profiles.PEER_IDENTIFIER_SYSTEM, "value": peer["id"]}
    patient = {"system": "urn:ietf:rfc:3986", "value": episode["client_id"]}
    name = [{"system": fhir_profiles.DATA_CATEGORY_SYSTEM, "code": "preferred-name"}]
    base = {"patientId": [patient], "actor": [peer_id], "purposeOfUse": ["COC"], "class": name}

    nothing = await ask(client, auth, base)
    assert (nothing["summary"], nothing["indicator"]) == ("NO_CONSENT", "warning")

    await record(client, auth, peer_consent(episode["patient"], ["preferred-name"], actor=peer["practitioner"]))
    permit = await ask(client, auth, base)
    assert (permit["summary"], permit["indicator"]) == ("CONSENT_PERMIT", "info")
    assert permit["extension"]["obligations"] == []

    diagnosis = base | {"class": [{"system": fhir_profiles.DATA_CATEGORY_SYSTEM, "code": "diagnosis"}]}
    # No consent speaks of diagnoses yet: nothing applies.
    assert (await ask(client, auth, diagnosis))["summary"] == "NO_CONSENT"
    # A broad permit applies, but diagnoses are shared only when a permit names them.
    broad = peer_consent(episode["patient"], [], actor=peer["practitioner"])
    del broad["provision"]["code"]
    await record(client, auth, broad)
    denied = await ask(client, auth, diagnosis)
    assert (denied["summary"], denied["indicator"]) == ("CONSENT_DENY", "critical")
    assert "diagnosis" in denied["detail"]
    # The consents are for coordination of care; a treatment purpose finds none.
    assert (await ask(client, auth, base | {"purposeOfUse": "TREAT"}))["summary"] == "NO_CONSENT"


async def test_cds_consult_for_everything_redacts_what_is_withheld(client: httpx.AsyncClient, auth: Auth) -> None:
    episode, peer = await discharged_client_with_peer(client, auth)
    await record(client, auth, peer_consent(episode["patient"], ["preferred-name", "interests"]))
    card = await ask(
        client,
        auth,
        {
            "patientId": {"value": fixture_json(DISCHARGE)["entry"][2]["resource"]["id"]},  # the EHR's own id
            "actor": {"system": fhir_profiles.PEER_IDENTIFIER_SYSTEM, "value": peer["id"]},
            "purposeOfUse": "COC",
            "category": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}],
        },
    )
    assert card["summary"] == "CONSENT_PERMIT"
    [obligation] = card["extension"]["obligations"]
    assert obligation["id"]["code"] == "REDACT"
    redacted = {c["code"] for c in obligation["parameters"]["codes"]}
    assert redacted == fhir_profiles.codes(fhir_profiles.DATA_CATEGORY_SYSTEM) - {"preferred-name", "interests"}


async def test_the_leap_consent_denies_restricted_data_to_organization_54(
    client: httpx.AsyncClient, auth: Auth
) -> None:
    bundle = fixture_json(DISCHARGE)
    bundle["entry"][2]["resource"]["meta"]["security"] = [
        {"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}
    ]
    await client.post("/fhir/$process-message", content=json.dumps(bundle), headers=auth(Role.EHR_SYSTEM))
    [episode] = (await client.get("/api/episodes", headers=auth(Role.COORDINATOR))).json()
    leap = fixture_json(LEAP)
    leap["patient"] = {"reference": episode["patient"]}
    leap["provision"]["period"]["end"] = (datetime.now(UTC) + timedelta(days=30)).date().isoformat()
    await record(client, auth, leap)  # no scope, patient-privacy in category: accepted (see consent/README.md)
    name = [{"system": fhir_profiles.DATA_CATEGORY_SYSTEM, "code": "admission-discharge"}]
    restricted_name = [{"system": fhir_profiles.DATA_CATEGORY_SYSTEM, "code": "preferred-name"}]
    org54 = {"value": "Organization/54"}
    context = {"patientId": {"value": episode["client_id"]}, "purposeOfUse": "COC"}
    assert (await ask(client, auth, context | {"actor": org54, "class": name}))["summary"] == "CONSENT_PERMIT"
    assert (await ask(client, auth, context | {"actor": org54, "class": restricted_name}))["summary"] == "CONSENT_DENY"


@pytest.mark.parametrize(
    "body",
    [
        {"hook": "something-else", "hookInstance": "x", "context": {"patientId": {"value": "1"}}},
        {"hook": "patient-consent-consult", "hookInstance": "x", "context": {}},
        {
            "hook": "patient-consent-consult",
            "hookInstance": "x",
            "context": {"patientId": {"value": "1"}, "class": [{"system": "urn:x", "code": "y"}]},
        },
    ],
)
async def test_malformed_consults_are_4xx(client: httpx.AsyncClient, auth: Auth, body: dict[str, Any]) -> None:
    await discharged_client_with_peer(client, auth)
    response = await client.post("/cds-services/patient-consent-consult", json=body, headers=auth(Role.EHR_SYSTEM))
    assert 400 <= response.status_code < 500
    assert response.json()["resourceType"] == "OperationOutcome"


async def test_the_accounting_of_disclosures_filters_by_date(client: httpx.AsyncClient, auth: Auth) -> None:
    episode, peer = await discharged_client_with_peer(client, auth)
    for _ in range(2):
        await client.get(f"/fhir/Patient/{episode['client_id']}/$peer-summary", headers=auth(Role.PEER, peer["id"]))
    today = datetime.now(UTC).date()

    async def count(*dates: str) -> int:
        response = await client.get(
            "/fhir/AuditEvent",
            params=[("patient", episode["patient"]), *[("date", d) for d in dates]],
            headers=auth(Role.COORDINATOR),
        )
        assert response.status_code == 200, response.text
        return int(response.json()["total"])

    assert await count() == 2
    assert await count(today.isoformat()) == 2
    assert await count(f"ge{today + timedelta(days=1)}") == 0
    assert await count(f"lt{today}") == 0
    bad = await client.get(
        "/fhir/AuditEvent", params={"patient": episode["patient"], "date": "last week"}, headers=auth(Role.COORDINATOR)
    )
    assert bad.status_code == 400
    assert bad.json()["issue"][0]["expression"] == ["date"]


async def test_reassigning_keeps_the_explanation_in_step(client: httpx.AsyncClient, auth: Auth) -> None:
    episode, first = await discharged_client_with_peer(client, auth)
    await record(client, auth, peer_consent(episode["patient"], ["preferred-name"], actor=first["practitioner"]))
    second = await register_peer(client, auth, "Robin Next")
    await assign(client, auth, episode["id"], second["id"])
    found = await explain(client, auth, episode["client_id"])
    assert found["preferred-name"]["shared"] is False
