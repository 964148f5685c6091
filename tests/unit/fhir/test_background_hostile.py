"""An EHR answering background searches with what it should not: other types, other patients' data, whole
sub-objects with extensions, labels spelled another way. What Peerway keeps is only this client's items of the
category, reduced to whitelisted primitives, labelled so the consent engine sees every restriction."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from consent import Coding, DataCategory
from consent.categories import ACT_CODE_SYSTEM, CONFIDENTIALITY_SYSTEM
from service.fhir.background import kept_items
from service.fhir.build import security_labels
from service.fhir.consent import parse_consent
from service.fhir.labels import INLINE_LABEL
from tests.support.consents import peer_consent

NOW = datetime(2026, 12, 1, tzinfo=UTC)
ME = "p1"


def goal(id_: str = "g1", **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Goal",
        "id": id_,
        "lifecycleStatus": "active",
        "description": {"text": "find a job"},
        "subject": {"reference": f"Patient/{ME}"},
        **extra,
    }


def condition(**extra: Any) -> dict[str, Any]:
    active = "http://terminology.hl7.org/CodeSystem/condition-clinical"
    return {
        "resourceType": "Condition",
        "id": "c1",
        "clinicalStatus": {"coding": [{"system": active, "code": "active"}]},
        "code": {"text": "schizophrenia"},
        "subject": {"reference": f"Patient/{ME}"},
        **extra,
    }


def kept(category: DataCategory, *found: dict[str, Any], hospital: str | None = None) -> list[dict[str, Any]]:
    return [k.resource for k in kept_items(category, found, "client-1", NOW, patient=ME, hospital=hospital)]


def test_a_condition_answering_the_goal_search_is_no_goal_and_a_repeated_source_is_kept_once() -> None:
    assert kept(DataCategory.RECOVERY_GOALS, condition(), goal(), goal()) == kept(DataCategory.RECOVERY_GOALS, goal())
    assert [r["resourceType"] for r in kept(DataCategory.RECOVERY_GOALS, condition(), goal(), goal())] == ["Goal"]
    assert kept(DataCategory.DIAGNOSIS, goal()) == []


def test_only_items_about_this_patient_are_kept() -> None:
    found = [
        goal("mine"),
        goal("absolute", subject={"reference": f"https://ehr.example.org/fhir/Patient/{ME}/_history/2"}),
        goal("theirs", subject={"reference": "Patient/p2"}),
        goal("suffix", subject={"reference": f"Patient/x{ME}"}),
        goal("nobody", subject={"display": "Eli"}),
        goal("noone"),
    ]
    del found[-1]["subject"]
    assert len(kept(DataCategory.RECOVERY_GOALS, *found)) == 2
    appointment = {
        "resourceType": "Appointment",
        "id": "a1",
        "status": "booked",
        "start": "2026-12-05T10:00:00Z",
        "participant": [{"actor": {"reference": "Patient/p2"}, "status": "accepted"}],
    }
    assert kept(DataCategory.UPCOMING_APPOINTMENTS, appointment) == []


def test_ids_that_are_no_fhir_ids_are_left_out() -> None:
    assert kept(DataCategory.RECOVERY_GOALS, goal("x" * 65), goal(".."), goal("a b")) == []


def care_team(*participants: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "CareTeam",
        "id": "ct",
        "status": "active",
        "name": "Eli's crisis team (note: threatened staff)",
        "subject": {"reference": f"Patient/{ME}"},
        "participant": list(participants),
    }


NURSE = {
    "member": {"reference": "Practitioner/n", "display": "Nurse Ratched"},
    "onBehalfOf": {"reference": "Organization/hospital/_history/3", "display": "Hospital"},
}
SISTER = {"member": {"reference": "RelatedPerson/s", "display": "Ann"}}
CLUBHOUSE = {
    "member": {"reference": "Practitioner/c", "display": "Cole"},
    "onBehalfOf": {"reference": "Organization/club", "display": "Clubhouse"},
}


def test_a_care_team_keeps_only_members_known_to_be_outside_the_hospital_and_no_name() -> None:
    [team] = kept(
        DataCategory.COMMUNITY_SUPPORTS, care_team(NURSE, SISTER, CLUBHOUSE), hospital="Organization/hospital"
    )
    assert [p["member"]["display"] for p in team["participant"]] == ["Ann", "Cole (Clubhouse)"]
    assert "name" not in team
    # A stay that names no hospital (HL7 v2): nobody acting for an organization can be told apart from staff.
    [team] = kept(DataCategory.COMMUNITY_SUPPORTS, care_team(NURSE, SISTER, CLUBHOUSE), hospital=None)
    assert [p["member"]["display"] for p in team["participant"]] == ["Ann"]


def test_codings_and_primitives_are_copied_only_as_their_whitelisted_types() -> None:
    coding = {
        "id": "x",
        "system": "http://snomed.info/sct",
        "code": "1",
        "display": "job",
        "version": "2020",
        "extension": [{"url": "http://ehr.example.org/note", "valueString": "says more"}],
    }
    person = {
        "resourceType": "RelatedPerson",
        "id": "rp",
        "patient": {"reference": f"Patient/{ME}"},
        "relationship": [{"coding": [coding], "extension": [{"url": "u", "valueString": "x"}]}],
        "name": [{"family": {"secret": "nested"}, "given": ["Ann", {"a": 1}, 3], "text": "Ann"}],
        "telecom": [{"system": "phone", "value": {"v": 1}}, {"system": "phone", "value": "555", "use": ["x"]}],
    }
    [kept_person] = kept(DataCategory.COMMUNITY_SUPPORTS, person)
    assert kept_person["relationship"] == [
        {"coding": [{"system": "http://snomed.info/sct", "code": "1", "display": "job"}]}
    ]
    assert kept_person["name"] == [{"text": "Ann", "given": ["Ann"]}]
    assert kept_person["telecom"] == [{"system": "phone", "value": "555"}]
    appointment = {
        "resourceType": "Appointment",
        "id": "a1",
        "status": "booked",
        "start": "2026-12-05T10:00:00Z",
        "description": {"div": "<b>the full note</b>"},
        "minutesDuration": True,
        "participant": [{"actor": {"reference": f"Patient/{ME}"}, "status": "accepted"}],
    }
    [kept_appointment] = kept(DataCategory.UPCOMING_APPOINTMENTS, appointment)
    assert "description" not in kept_appointment
    assert "minutesDuration" not in kept_appointment


def test_a_related_person_is_kept_only_when_active_is_absent_or_the_boolean_true() -> None:
    def person(**extra: Any) -> dict[str, Any]:
        return {"resourceType": "RelatedPerson", "id": "rp", "patient": {"reference": f"Patient/{ME}"}, **extra}

    assert len(kept(DataCategory.COMMUNITY_SUPPORTS, person())) == 1
    assert len(kept(DataCategory.COMMUNITY_SUPPORTS, person(active=True))) == 1
    not_in_use: object
    for not_in_use in (False, "false", "true", 0, 1, None, [], {}):
        assert kept(DataCategory.COMMUNITY_SUPPORTS, person(active=not_in_use)) == [], not_in_use


def test_a_related_person_whose_period_has_ended_is_not_kept() -> None:
    def person(period: dict[str, str]) -> dict[str, Any]:
        return {
            "resourceType": "RelatedPerson",
            "id": "rp",
            "patient": {"reference": f"Patient/{ME}"},
            "period": period,
        }

    assert kept(DataCategory.COMMUNITY_SUPPORTS, person({"start": "2020-01-01", "end": "2026-11-30"})) == []
    assert kept(DataCategory.COMMUNITY_SUPPORTS, person({"end": "2026-11"})) == []  # all of November: over by NOW
    assert len(kept(DataCategory.COMMUNITY_SUPPORTS, person({"end": "2026-12-01"}))) == 1  # to the end of that day
    assert len(kept(DataCategory.COMMUNITY_SUPPORTS, person({"start": "2020-01-01"}))) == 1


def test_a_kept_item_that_is_no_valid_r4_resource_is_dropped() -> None:
    assert kept(DataCategory.RECOVERY_GOALS, goal(startDate="last spring")) == []


def test_labels_are_read_in_every_spelling_and_unknown_systems_fail_closed() -> None:
    def labels(*security: dict[str, Any], **extra: Any) -> list[tuple[str, str]]:
        return security_labels({"resourceType": "Goal", "meta": {"security": list(security)}, **extra})

    assert labels({"system": "urn:oid:2.16.840.1.113883.5.25", "code": "R"}) == [(CONFIDENTIALITY_SYSTEM, "R")]
    assert labels({"system": "urn:oid:2.16.840.1.113883.5.4", "code": "PSY"}) == [(ACT_CODE_SYSTEM, "PSY")]
    assert labels({"code": "V"}) == [(CONFIDENTIALITY_SYSTEM, "V")]
    assert labels({"system": "http://ehr.example.org/labels", "code": "SUD"}) == [(ACT_CODE_SYSTEM, "SUD")]
    inline = {"url": INLINE_LABEL, "valueCoding": {"system": "urn:oid:2.16.840.1.113883.5.4", "code": "ETH"}}
    assert labels(description={"text": "x", "extension": [inline]}) == [(ACT_CODE_SYSTEM, "ETH")]
    [item] = kept_items(
        DataCategory.RECOVERY_GOALS,
        [goal(description={"text": "stay sober", "extension": [inline]})],
        "client-1",
        NOW,
        patient=ME,
    )
    assert item.labels == ((ACT_CODE_SYSTEM, "ETH"),)
    assert "extension" not in str(item.resource)


def test_a_consent_naming_a_label_by_oid_names_the_label_the_data_carry() -> None:
    consent = peer_consent("Patient/c1", ["upcoming-appointments"], actor="Practitioner/peer")
    consent["provision"]["securityLabel"] = [{"system": "urn:oid:2.16.840.1.113883.5.4", "code": "SUD"}]
    record = parse_consent(consent)
    assert record.provision is not None
    assert record.provision.security_labels == (Coding(ACT_CODE_SYSTEM, "SUD"),)
