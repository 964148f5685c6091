"""Background from the EHR reduced to what a peer may need (service/fhir/background.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fhir.resources.R4B.appointment import Appointment
from fhir.resources.R4B.flag import Flag

from consent import DataCategory
from fhir_profiles.conformance import check_conformance
from service.fhir.background import kept_items, minimal_address, searches
from tests.conftest import fixture_json

NOW = datetime(2026, 12, 1, tzinfo=UTC)
PATIENT = fixture_json("davinci/davinci-alerts-discharge-notification-message-bundle-01.json")["entry"][2]["resource"]


def test_an_address_keeps_the_town_and_loses_geolocation_history_and_street() -> None:
    addresses: list[Any] = [
        *PATIENT["address"],
        {"use": "old", "line": ["1 Old Rd"], "city": "Lowell"},
        {"line": ["2 Past St"], "city": "Salem", "period": {"start": "2010-01-01", "end": "2015-01-01"}},
    ]
    assert minimal_address(addresses, street=False) == [
        {"city": "Methuen", "state": "MA", "postalCode": "01844", "country": "US"}
    ]
    [with_street] = minimal_address(addresses, street=True)
    assert with_street["line"] == ["715 Crona Corner"]
    assert "extension" not in with_street


def appointment(start: str, status: str = "booked", **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Appointment",
        "id": f"a-{start[:10]}",  # a FHIR id has no colon
        "status": status,
        "start": start,
        "participant": [{"actor": {"reference": "Patient/p1", "display": "Eli"}, "status": "accepted"}],
        **extra,
    }


def test_only_upcoming_live_appointments_are_kept_with_their_labels_and_no_ehr_reference() -> None:
    sud = {"security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "SUD"}]}
    found = [
        appointment("2026-12-05T10:00:00Z", meta=sud),
        appointment("2026-11-05T10:00:00Z"),
        appointment("2026-12-06T10:00:00Z", status="cancelled"),
    ]
    [kept] = kept_items(DataCategory.UPCOMING_APPOINTMENTS, found, "client-1", NOW, patient="p1")
    assert kept.labels == (("http://terminology.hl7.org/CodeSystem/v3-ActCode", "SUD"),)
    assert kept.source == "Appointment/a-2026-12-05"
    assert kept.resource["participant"] == [{"actor": {"reference": "Patient/client-1"}, "status": "accepted"}]
    assert "a-2026" not in str(kept.resource)
    Appointment.model_validate(kept.resource)
    # The same source keeps its id on the next read.
    assert (
        kept_items(DataCategory.UPCOMING_APPOINTMENTS, found, "client-1", NOW, patient="p1")[0].item_id == kept.item_id
    )


def flag(code: str, **extra: Any) -> dict[str, Any]:
    category = [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/flag-category", "code": code}]}]
    return {
        "resourceType": "Flag",
        "id": code,
        "status": "active",
        "category": category,
        "code": {"text": f"a {code} flag"},
        "subject": {"reference": "Patient/p1"},
        **extra,
    }


def test_only_active_safety_flags_are_kept() -> None:
    found = [
        flag("safety"),
        flag("clinical"),
        flag("behavioral"),
        flag("safety", id="old", period={"start": "2025-01-01", "end": "2025-02-01"}),
    ]
    [kept] = kept_items(DataCategory.SAFETY_CONSIDERATIONS, found, "client-1", NOW, patient="p1")
    assert kept.resource["code"] == {"text": "a safety flag"}
    Flag.model_validate(kept.resource)


def test_community_supports_take_two_searches_and_diagnosis_one() -> None:
    plan = searches([DataCategory.COMMUNITY_SUPPORTS, DataCategory.DIAGNOSIS], "p1", NOW)
    assert [(s.resource_type, dict(s.params)["patient"]) for s in plan] == [
        ("RelatedPerson", "Patient/p1"),
        ("CareTeam", "Patient/p1"),
        ("Condition", "Patient/p1"),
    ]
    assert dict(plan[-1].params)["clinical-status"] == "active,recurrence,relapse"


def test_notes_are_searched_without_their_content_and_appointments_from_now_on() -> None:
    [notes, appointments] = searches([DataCategory.CLINICAL_NOTES, DataCategory.UPCOMING_APPOINTMENTS], "p1", NOW)
    elements = dict(notes.params)["_elements"].split(",")
    assert "content" not in elements
    assert "meta" in elements  # the security labels come with it
    assert dict(appointments.params)["date"] == "ge2026-12-01T00:00:00Z"


def test_the_summary_profiles_refuse_what_a_summary_must_never_carry() -> None:
    base = "https://peerway.github.io/fhir/StructureDefinition"
    patient = {"resourceType": "Patient", "id": "c", "birthDate": "2000-10-15", "address": PATIENT["address"]}
    problems = {p.expression for p in check_conformance(patient, f"{base}/peer-summary-patient")}
    assert problems == {"Patient.birthDate", "Patient.address[0].extension"}
    bundle = {"resourceType": "Bundle", "type": "searchset", "timestamp": "2026-12-01T00:00:00Z"}
    assert [p.expression for p in check_conformance(bundle, f"{base}/peer-client-summary")] == ["Bundle.type"]


def test_the_item_profiles_refuse_narrative_contained_extensions_and_coding_extensions() -> None:
    base = "https://peerway.github.io/fhir/StructureDefinition"
    coding = {"code": "1", "extension": [{"url": "http://ehr.example.org/note", "valueString": "more"}]}
    goal = {
        "resourceType": "Goal",
        "id": "g",
        "lifecycleStatus": "active",
        "text": {"status": "generated", "div": "<div>the whole note</div>"},
        "contained": [{"resourceType": "Condition", "id": "c"}],
        "description": {"coding": [coding]},
        "subject": {"reference": "Patient/client-1"},
    }
    problems = {p.expression for p in check_conformance(goal, f"{base}/peer-summary-goal")}
    assert problems == {"Goal.text", "Goal.contained", "Goal.description.coding[0].extension"}
    team = {"resourceType": "CareTeam", "id": "t", "name": "crisis team", "extension": [coding["extension"][0]]}
    problems = {p.expression for p in check_conformance(team, f"{base}/peer-summary-care-team")}
    assert problems == {"CareTeam.name", "CareTeam.extension"}
