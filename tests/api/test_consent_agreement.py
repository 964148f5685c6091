"""The three ways Peerway answers "may the peer see this?" never disagree: the peer's summary (what is
disclosed), the coordinator's explanation (what it says is shared) and the CDS Hooks consult (what an EHR is
told), over consent shapes a privacy officer would try, R4 and R5."""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

import fhir_profiles
from service.auth import Role
from tests.support.consents import as_r5, peer_consent
from tests.support.flow import discharged_client_with_peer

Auth = Callable[..., dict[str, str]]
HELD = ("preferred-name", "contact-details", "admission-discharge")
CATEGORY = fhir_profiles.DATA_CATEGORY_SYSTEM
ASSIGNED = fhir_profiles.PARTICIPANT_ROLE_SYSTEM
IRCP = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
NOW = datetime.now(UTC)
Shape = Callable[[str, str], list[dict[str, Any]]]  # (patient reference, peer Practitioner reference) -> Consents


def codes(*names: str) -> list[dict[str, Any]]:
    return [{"coding": [{"system": CATEGORY, "code": n}]} for n in names]


def assigned_peer_actor() -> dict[str, Any]:
    return {
        "role": {"coding": [{"system": ASSIGNED, "code": "assigned-peer-supporter"}]},
        "reference": {"display": "the client's assigned peer supporter"},
    }


def broad_permit(patient: str, peer: str) -> dict[str, Any]:
    consent = peer_consent(patient, [], actor=peer)
    del consent["provision"]["code"]
    return consent


def nested_deny(patient: str, peer: str) -> list[dict[str, Any]]:
    consent = broad_permit(patient, peer)
    consent["provision"]["provision"] = [{"type": "deny", "code": codes("admission-discharge")}]
    return [consent]


def deny_root_for_the_peer_as_assigned(patient: str, peer: str) -> list[dict[str, Any]]:
    # A root without type (a deny) naming the peer in the assigned role; nested permits for two categories.
    consent = peer_consent(patient, ["preferred-name"], actor=peer)
    root = consent["provision"]
    consent["provision"] = {
        "period": root["period"],
        "actor": [
            {
                "role": {"coding": [{"system": ASSIGNED, "code": "assigned-peer-supporter"}]},
                "reference": {"reference": peer},
            }
        ],
        "provision": [{"type": "permit", "code": codes("preferred-name", "admission-discharge")}],
    }
    return [consent]


def deny_root_for_treatment_only(patient: str, peer: str) -> list[dict[str, Any]]:
    consent = peer_consent(patient, ["preferred-name"], actor=peer)
    root = consent["provision"]
    consent["provision"] = {
        "type": "deny",
        "period": root["period"],
        "purpose": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "TREAT"}],
        "provision": [{"type": "permit", "code": codes("preferred-name", "contact-details")}],
    }
    return [consent]


def stay_dates_only(patient: str, peer: str) -> list[dict[str, Any]]:
    # Data from the last year only: the stay has a date, a name has none, so only the stay is shown.
    consent = broad_permit(patient, peer)
    consent["provision"]["dataPeriod"] = {"start": (NOW - timedelta(days=3650)).date().isoformat()}
    return [consent]


def same_date_permit_and_deny(patient: str, peer: str) -> list[dict[str, Any]]:
    signed = NOW - timedelta(hours=1)
    permit = peer_consent(patient, list(HELD), actor=peer, date_time=signed)
    deny = peer_consent(patient, ["contact-details"], actor=peer, date_time=signed)
    deny["provision"]["type"] = "deny"
    return [permit, deny]


def resent_inactive(patient: str, peer: str) -> list[dict[str, Any]]:
    form = [{"system": "urn:oid:2.16.840.1.113883.19.5", "value": "tdm-consent-1"}]
    first = peer_consent(patient, list(HELD), actor=peer)
    first["identifier"] = form
    again = copy.deepcopy(first)
    again["status"] = "inactive"
    return [first, again]


def r5_encounter_only(patient: str, peer: str) -> list[dict[str, Any]]:
    consent = as_r5(peer_consent(patient, [], actor=peer))
    consent["provision"][0].pop("code", None)
    consent["provision"][0]["resourceType"] = [{"system": "http://hl7.org/fhir/fhir-types", "code": "Encounter"}]
    return [consent]


def r5_assigned_role(patient: str, peer: str) -> list[dict[str, Any]]:
    consent = as_r5(peer_consent(patient, ["preferred-name", "contact-details"]))
    return [consent]


SHAPES: dict[str, Shape] = {
    "a permit for the assigned peer": lambda p, _: [peer_consent(p, ["preferred-name"])],
    "a permit naming the peer, all held categories": lambda p, peer: [peer_consent(p, list(HELD), actor=peer)],
    "a broad permit with a nested deny": nested_deny,
    "an untyped root for the peer as assigned peer": deny_root_for_the_peer_as_assigned,
    "a deny root for treatment only": deny_root_for_treatment_only,
    "a dataPeriod: dated data only": stay_dates_only,
    "a permit and a deny signed at the same time": same_date_permit_and_deny,
    "a form re-sent as inactive": resent_inactive,
    "R5: a permit of Encounter data (fhir-types)": r5_encounter_only,
    "R5: the assigned peer's role": r5_assigned_role,
}
EXPECTED = {
    "a permit for the assigned peer": {"preferred-name"},
    "a permit naming the peer, all held categories": set(HELD),
    "a broad permit with a nested deny": {"preferred-name", "contact-details"},
    "an untyped root for the peer as assigned peer": {"preferred-name", "admission-discharge"},
    "a deny root for treatment only": set(),
    "a dataPeriod: dated data only": {"admission-discharge"},
    "a permit and a deny signed at the same time": {"preferred-name", "admission-discharge"},
    "a form re-sent as inactive": set(),
    "R5: a permit of Encounter data (fhir-types)": {"admission-discharge"},
    "R5: the assigned peer's role": {"preferred-name", "contact-details"},
}


def in_summary(bundle: dict[str, Any]) -> set[str]:
    shown: set[str] = set()
    for entry in bundle.get("entry", []):
        resource = entry["resource"]
        if resource["resourceType"] == "Patient":
            if "name" in resource:
                shown.add("preferred-name")
            if "telecom" in resource or "address" in resource:
                shown.add("contact-details")
        elif resource["resourceType"] == "Encounter":
            shown.add("admission-discharge")
    return shown


@pytest.mark.parametrize("shape", list(SHAPES))
async def test_summary_explanation_and_consult_agree(client: httpx.AsyncClient, auth: Auth, shape: str) -> None:
    episode, peer = await discharged_client_with_peer(client, auth)
    for consent in SHAPES[shape](episode["patient"], peer["practitioner"]):
        response = await client.post("/fhir/Consent", json=consent, headers=auth(Role.COORDINATOR))
        assert response.status_code == 201, response.text

    summary = await client.get(
        f"/fhir/Patient/{episode['client_id']}/$peer-summary", headers=auth(Role.PEER, peer["id"])
    )
    assert summary.status_code == 200, summary.text
    disclosed = in_summary(summary.json())

    explained = await client.get(f"/api/clients/{episode['client_id']}/sharing", headers=auth(Role.COORDINATOR))
    said_shared = {c["category"] for c in explained.json()["categories"] if c["shared"]} & set(HELD)

    told_permitted = set()
    for category in HELD:
        context = {
            "patientId": [{"value": episode["client_id"]}],
            "actor": [{"system": fhir_profiles.PEER_IDENTIFIER_SYSTEM, "value": peer["id"]}],
            "purposeOfUse": ["COC"],
            "class": [{"system": CATEGORY, "code": category}],
        }
        hook = {"hook": "patient-consent-consult", "hookInstance": "00000000-0000-4000-8000-000000000001"}
        answer = await client.post(
            "/cds-services/patient-consent-consult", json=hook | {"context": context}, headers=auth(Role.EHR_SYSTEM)
        )
        assert answer.status_code == 200, answer.text
        if answer.json()["cards"][0]["summary"] == "CONSENT_PERMIT":
            told_permitted.add(category)

    assert disclosed == said_shared == told_permitted == EXPECTED[shape]
