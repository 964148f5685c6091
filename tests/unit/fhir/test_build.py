"""Every resource Peerway writes is valid R4 (checked with the R4B models) and, for contacts, conforms to
our PeerContact profile — whatever the kind of contact."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from fhir.resources.R4B.auditevent import AuditEvent
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.consent import Consent
from fhir.resources.R4B.encounter import Encounter
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.patient import Patient
from fhir.resources.R4B.practitioner import Practitioner

import fhir_profiles
from consent import DataCategory
from service.domain.vocabulary import ContactKind
from service.fhir import build
from service.fhir.capability import capability_statement
from tests.conftest import fixture_json

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def view(kind: ContactKind) -> build.ContactView:
    return build.ContactView(
        contact_id="c-1",
        kind=kind,
        started_at=NOW,
        minutes=45,
        subject_reference="Patient/p-1",
        hospital_stay_reference="Encounter/stay-1",
        practitioner_reference="Practitioner/peerway-peer-1",
        peer_id="peer-1",
        peer_name="Alex Morgan",
    )


@pytest.mark.parametrize("kind", list(ContactKind))
def test_each_kind_of_contact_is_a_valid_peer_contact(kind: ContactKind) -> None:
    encounter = build.contact_encounter(view(kind))
    Encounter.model_validate(encounter)
    assert fhir_profiles.check_conformance(encounter, fhir_profiles.PEER_CONTACT_PROFILE) == []
    expected_class = fhir_profiles.concept_property(
        fhir_profiles.PEER_CONTACT_KIND_SYSTEM, kind.value, "encounter-class"
    )
    assert encounter["class"] == expected_class
    assert encounter["period"]["end"] == "2026-11-26T12:45:00Z"
    assert encounter["partOf"] == {"reference": "Encounter/stay-1"}  # the hospital stay, in the community too


def test_the_peer_is_a_valid_practitioner_with_our_identifier() -> None:
    practitioner = build.practitioner("peer-1", "Alex Jo Morgan")
    Practitioner.model_validate(practitioner)
    assert practitioner["name"][0] == {"text": "Alex Jo Morgan", "family": "Morgan", "given": ["Alex", "Jo"]}
    assert practitioner["identifier"][0]["system"] == fhir_profiles.PEER_IDENTIFIER_SYSTEM


def test_the_summary_patient_holds_only_the_permitted_elements() -> None:
    patient = fixture_json("davinci/davinci-alerts-discharge-notification-message-bundle-01.json")["entry"][2][
        "resource"
    ]
    patient["extension"].append(
        {
            "url": build.PRONOUNS_EXTENSION,
            "valueCodeableConcept": {"coding": [{"system": "http://loinc.org", "code": "LA29519-8"}]},
        }
    )
    name_only = build.summary_patient("client-1", patient, frozenset({DataCategory.PREFERRED_NAME}))
    Patient.model_validate(name_only)
    assert set(name_only) == {"resourceType", "id", "name", "extension", "communication"}  # languages spoken
    assert [e["url"] for e in name_only["extension"]] == [build.PRONOUNS_EXTENSION]
    contact_only = build.summary_patient("client-1", patient, frozenset({DataCategory.CONTACT_DETAILS}))
    assert set(contact_only) == {"resourceType", "id", "telecom", "address"}
    assert build.summary_patient("client-1", patient, frozenset()) == {"resourceType": "Patient", "id": "client-1"}


def test_the_summary_encounter_drops_clinicians_reasons_and_people() -> None:
    stay = fixture_json("davinci/davinci-alerts-discharge-notification-message-bundle-01.json")["entry"][1]["resource"]
    stay["reasonCode"] = [{"text": "psychosis"}]
    summary = build.summary_encounter("episode-1", "client-1", stay)
    Encounter.model_validate(summary)
    assert set(summary) == {"resourceType", "id", "status", "class", "subject", "period", "location", "hospitalization"}
    assert summary["location"] == [{"location": {"display": "HOLY FAMILY HOSPITAL"}}]


def test_collections_searchsets_outcomes_and_audit_events_are_valid() -> None:
    resources = [{"resourceType": "Patient", "id": "a"}]
    Bundle.model_validate(build.collection(resources, "http://x", NOW))
    Bundle.model_validate(build.searchset(resources, "http://x", [("self", "http://x/fhir/Patient")], 1))
    lenient = build.searchset([], "http://x", [("self", "http://x/fhir/Patient")], None, ["foo was ignored"])
    Bundle.model_validate(lenient)
    assert "total" not in lenient
    assert lenient["entry"][0]["search"] == {"mode": "outcome"}
    OperationOutcome.model_validate(build.operation_outcome("error", "invalid", "bad", "Encounter.status"))
    event = build.disclosure_audit_event(
        build.Disclosure(
            audit_id="a-1",
            client_id="client-1",
            actor_reference="Practitioner/peer-1",
            actor_name="Alex Morgan",
            purpose="COC",
            disclosed=frozenset({DataCategory.PREFERRED_NAME}),
            withheld=frozenset({DataCategory.CONTACT_DETAILS}),
            consent_ids=frozenset({"consent-1"}),
            recorded_at=NOW,
        )
    )
    AuditEvent.model_validate(event)
    assert event["outcome"] == "0"


def test_the_capability_statement_is_valid() -> None:
    CapabilityStatement.model_validate(capability_statement("http://x", "0.1.0"))


def test_a_stamped_consent_keeps_the_document_and_names_our_client() -> None:
    leap = fixture_json("consent/leap-cds-r4-consent-permit-with-deny-R-label.json")
    stored = build.stamped_consent(leap, "c-9", 3, "Patient/client-1", NOW)
    assert stored["id"] == "c-9"
    assert stored["meta"] == {"versionId": "3", "lastUpdated": "2026-11-26T12:00:00Z"}
    assert stored["patient"] == {"reference": "Patient/client-1", "display": "Betterhalf, Boris"}
    assert stored["provision"] == leap["provision"]
    Consent.model_validate({**stored, "scope": {"text": "privacy"}})
