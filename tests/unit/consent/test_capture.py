"""service.fhir.consent_capture: what recording a Consent refuses beyond what parse_consent refuses.

Each refusal is a code the engine would match against nothing (so a deny naming it would deny nothing) or an
element R5 does not have; each names the element, so the sender can fix it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import pytest

import fhir_profiles
from consent import DataCategory
from consent.categories import (
    CATEGORY_SYSTEM,
    CONFIDENTIALITY_SYSTEM,
    CONSENT_ACTION_SYSTEM,
    FHIR_TYPES_SYSTEM,
    PARTICIPANT_ROLE_SYSTEM,
    RESOURCE_TYPES_SYSTEM,
)
from service.app.sharing import SOURCE_TYPES
from service.errors import InvalidResource
from service.fhir.consent import parse_consent
from service.fhir.consent_capture import (
    CONFIDENTIALITY_LEVELS,
    CONSENT_ACTIONS,
    check_for_capture,
    current_codes,
    is_resource_type,
)
from tests.conftest import fixture_json
from tests.support.consents import as_r5

LEAP = "consent/leap-cds-r4-consent-permit-with-deny-R-label.json"
Change = Callable[[dict[str, Any]], object]


def capture(data: dict[str, Any]) -> None:
    """What POST/PUT /fhir/Consent run before storing (service/app/consents.py)."""
    parse_consent(data)
    check_for_capture(data)


def r4(change: Change) -> dict[str, Any]:
    data = fixture_json(LEAP)
    change(data)
    return data


def r5(change: Change) -> dict[str, Any]:
    data = as_r5(fixture_json(LEAP))
    change(data)
    return data


def deny(data: dict[str, Any]) -> dict[str, Any]:
    """The LEAP consent's nested deny (R4 `provision.provision[0]`, R5 `provision[0]`)."""
    provision = data["provision"]
    node: dict[str, Any] = provision[0] if isinstance(provision, list) else provision["provision"][0]
    return node


def coding(system: str, code: str) -> dict[str, str]:
    return {"system": system, "code": code}


def concept(system: str, code: str) -> dict[str, Any]:
    return {"coding": [coding(system, code)]}


REFUSED = [
    pytest.param(
        r4(lambda d: deny(d).update({"class": [coding(CATEGORY_SYSTEM, "diagnosis")]})),
        "Consent.provision.provision[0].class[0]",
        id="data category named in class",
    ),
    pytest.param(
        r4(lambda d: deny(d).update(code=[concept(CATEGORY_SYSTEM, "diagnoses")])),
        "Consent.provision.provision[0].code[0].coding[0]",
        id="data category typo",
    ),
    pytest.param(
        r4(lambda d: deny(d).update(code=[concept(CATEGORY_SYSTEM, "Diagnosis")])),
        "Consent.provision.provision[0].code[0].coding[0]",
        id="data category in the wrong case",
    ),
    pytest.param(
        r5(lambda d: deny(d).update(code=[concept("http://loinc.org", "11450-4"), concept(CATEGORY_SYSTEM, "notes")])),
        "Consent.provision[0].code[1].coding[0]",
        id="r5 data category typo",
    ),
    pytest.param(
        r4(lambda d: d["provision"].update(code=[concept(CATEGORY_SYSTEM, "medications")])),
        "Consent.provision.code[0].coding[0]",
        id="category Peerway does not have",
    ),
    pytest.param(
        r4(lambda d: deny(d)["action"].append(concept(CONSENT_ACTION_SYSTEM, "read"))),
        "Consent.provision.provision[0].action[2].coding[0]",
        id="consent action typo",
    ),
    pytest.param(
        r5(lambda d: deny(d).update(action=[concept(CONSENT_ACTION_SYSTEM, "Access")])),
        "Consent.provision[0].action[0].coding[0]",
        id="r5 consent action in the wrong case",
    ),
    pytest.param(
        r4(lambda d: deny(d).update(securityLabel=[coding(CONFIDENTIALITY_SYSTEM, "RESTRICTED")])),
        "Consent.provision.provision[0].securityLabel[0]",
        id="confidentiality typo",
    ),
    pytest.param(
        r5(lambda d: deny(d)["securityLabel"].append(coding(CONFIDENTIALITY_SYSTEM, "r"))),
        "Consent.provision[0].securityLabel[1]",
        id="r5 confidentiality in the wrong case",
    ),
    pytest.param(
        r4(lambda d: deny(d).update({"class": [coding(RESOURCE_TYPES_SYSTEM, "Encounters")]})),
        "Consent.provision.provision[0].class[0]",
        id="resource type typo",
    ),
    pytest.param(
        r4(lambda d: d["provision"].update({"class": [coding(RESOURCE_TYPES_SYSTEM, "HumanName")]})),
        "Consent.provision.class[0]",
        id="a datatype, not a resource type",
    ),
    pytest.param(
        r4(lambda d: d["provision"].update({"class": [coding(RESOURCE_TYPES_SYSTEM, "DomainResource")]})),
        "Consent.provision.class[0]",
        id="an abstract type",
    ),
    pytest.param(
        r4(lambda d: d["provision"].update({"class": [coding(RESOURCE_TYPES_SYSTEM, "Transport")]})),
        "Consent.provision.class[0]",
        id="an R5-only type in R4's system",
    ),
    pytest.param(
        r5(lambda d: deny(d).update(resourceType=[coding(FHIR_TYPES_SYSTEM, "encounter")])),
        "Consent.provision[0].resourceType[0]",
        id="r5 resource type in the wrong case",
    ),
    pytest.param(
        r5(lambda d: deny(d).update(resourceType=[coding(FHIR_TYPES_SYSTEM, "Media")])),
        "Consent.provision[0].resourceType[0]",
        id="r5 type R5 no longer has",
    ),
    pytest.param(
        r4(lambda d: deny(d)["actor"][0].update(role=concept(PARTICIPANT_ROLE_SYSTEM, "assigned-peer"))),
        "Consent.provision.provision[0].actor[0].role.coding[0]",
        id="participant role typo",
    ),
    pytest.param(
        r5(lambda d: deny(d)["actor"][0].update(role=concept(PARTICIPANT_ROLE_SYSTEM, "peer"))),
        "Consent.provision[0].actor[0].role.coding[0]",
        id="r5 participant role typo",
    ),
    pytest.param(
        r5(lambda d: deny(d).update(provision=[{"code": [concept(CATEGORY_SYSTEM, "goals")]}])),
        "Consent.provision[0].provision[0].code[0].coding[0]",
        id="r5 nested exception",
    ),
    pytest.param(r5(lambda d: d.update(patient=d["subject"])), "Consent.patient", id="r5 with R4's patient as well"),
    pytest.param(
        r5(lambda d: d.update(patient=d.pop("subject"))), "Consent.patient", id="r5 with R4's patient instead"
    ),
    pytest.param(
        r5(lambda d: deny(d).update({"class": [coding(RESOURCE_TYPES_SYSTEM, "Encounter")]})),
        "Consent.provision[0].class",
        id="r5 with R4's class",
    ),
    pytest.param(r5(lambda d: d.update(date="2019-11-01T10:00:00Z")), "Consent.date", id="r5 date as a dateTime"),
    pytest.param(
        r5(lambda d: deny(d).update(recipient=[{"reference": "Organization/54"}])),
        "Consent.provision[0].recipient",
        id="r5 element R5 does not have",
    ),
    pytest.param(
        r5(lambda d: deny(d).update(modifierExtension=[{"url": "http://x.example", "valueBoolean": True}])),
        "Consent.provision[0].modifierExtension",
        id="r5 modifier extension",
    ),
    pytest.param(
        r4(lambda d: d.update(modifierExtension=[{"url": "http://x.example", "valueBoolean": True}])),
        "Consent.modifierExtension",
        id="modifier extension",
    ),
]


@pytest.mark.parametrize(("data", "expression"), REFUSED)
def test_recording_refuses_what_would_match_nothing_naming_the_element(data: dict[str, Any], expression: str) -> None:
    with pytest.raises(InvalidResource) as refused:
        capture(data)
    assert refused.value.expression == expression
    assert refused.value.status == 422


def test_a_refusal_says_what_the_code_system_has() -> None:
    with pytest.raises(InvalidResource) as refused:
        capture(r4(lambda d: deny(d).update(code=[concept(CATEGORY_SYSTEM, "diagnoses")])))
    assert "'diagnoses' is not a Peerway data category" in refused.value.diagnostics
    assert "diagnosis" in refused.value.diagnostics
    with pytest.raises(InvalidResource) as r4_name:
        capture(r5(lambda d: d.update(patient=d.pop("subject"))))
    assert "an R5 Consent uses subject" in r4_name.value.diagnostics


def test_stored_consents_with_such_codes_are_still_read() -> None:
    # parse_consent also reads what Peerway stored before these checks; only recording refuses.
    parse_consent(r4(lambda d: deny(d).update(code=[concept(CATEGORY_SYSTEM, "diagnoses")])))
    parse_consent(r5(lambda d: d.update(patient=d.pop("subject"))))


def every(system: str, codes: Iterable[str], where: Callable[[dict[str, Any], dict[str, str]], object]) -> list[Any]:
    """The LEAP consent naming each code of `system` in turn, put in place by `where`."""
    params = []
    for code in codes:
        data = fixture_json(LEAP)
        where(data, coding(system, code))
        params.append(pytest.param(data, id=f"{system}#{code}"))
    return params


ACCEPTED = [
    pytest.param(fixture_json(LEAP), id="the LEAP consent"),
    pytest.param(as_r5(fixture_json(LEAP)), id="the LEAP consent as R5"),
    *every(CATEGORY_SYSTEM, DataCategory, lambda d, c: deny(d).update(code=[{"coding": [c]}])),
    *every(CONSENT_ACTION_SYSTEM, CONSENT_ACTIONS, lambda d, c: deny(d).update(action=[{"coding": [c]}])),
    *every(CONFIDENTIALITY_SYSTEM, CONFIDENTIALITY_LEVELS, lambda d, c: deny(d).update(securityLabel=[c])),
    *every(
        PARTICIPANT_ROLE_SYSTEM,
        fhir_profiles.codes(PARTICIPANT_ROLE_SYSTEM),
        lambda d, c: deny(d)["actor"][0].update(role={"coding": [c]}),
    ),
    *every(
        RESOURCE_TYPES_SYSTEM,
        ["Encounter", "List", "Bundle", "SubscriptionTopic", "MedicinalProduct"],  # R4B adds, R4 alone had
        lambda d, c: deny(d).update({"class": [c]}),
    ),
    pytest.param(
        r5(lambda d: deny(d).update(resourceType=[coding(FHIR_TYPES_SYSTEM, t) for t in ("Encounter", "Transport")])),
        id="r5 resource types",
    ),
    pytest.param(
        r5(lambda d: deny(d).update(resourceType=[coding(RESOURCE_TYPES_SYSTEM, "Encounter")])),
        id="r5 naming a type in R4's system",
    ),
    pytest.param(
        r4(lambda d: deny(d).update(securityLabel=[coding("http://terminology.hl7.org/CodeSystem/v3-ActCode", "PSY")])),
        id="codes of systems Peerway does not know in full are left alone",
    ),
    pytest.param(
        r5(lambda d: deny(d).update(documentType=[coding("http://loinc.org", "11488-4")])), id="r5 document type"
    ),
]


@pytest.mark.parametrize("data", ACCEPTED)
def test_recording_accepts_every_code_of_the_code_systems_it_checks(data: dict[str, Any]) -> None:
    capture(data)


def test_the_current_data_categories_are_the_engines() -> None:
    assert set(current_codes(CATEGORY_SYSTEM)) == {c.value for c in DataCategory}


@pytest.mark.parametrize("resource_type", sorted(set(SOURCE_TYPES.values())))
def test_every_type_peerway_holds_data_in_is_a_resource_type_in_both_versions(resource_type: str) -> None:
    assert is_resource_type(resource_type, RESOURCE_TYPES_SYSTEM)
    assert is_resource_type(resource_type, FHIR_TYPES_SYSTEM)
    assert not is_resource_type(resource_type, "http://example.org/types")
