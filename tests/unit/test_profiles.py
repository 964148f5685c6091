"""fhir_profiles: our artifacts are valid R4, say what the program needs, and the checker enforces them."""

from __future__ import annotations

import copy
import importlib
import json
from importlib import resources
from typing import Any

import pytest
from fhir.resources.R4B.encounter import Encounter

import fhir_profiles as fp
from service.domain.vocabulary import ContactKind

CONFORMANCE_TYPES = (
    "CodeSystem",
    "ValueSet",
    "StructureDefinition",
    "CapabilityStatement",
    "OperationDefinition",
    "SearchParameter",
)

# R4 (4.0.1) Encounter elements and their types (None: a BackboneElement), as listed on
# https://hl7.org/fhir/R4/encounter-dependencies.html, plus those inherited from DomainResource.
R4_ENCOUNTER: dict[str, str | None] = {
    "Encounter.id": "id",
    "Encounter.meta": "Meta",
    "Encounter.implicitRules": "uri",
    "Encounter.language": "code",
    "Encounter.text": "Narrative",
    "Encounter.contained": "Resource",
    "Encounter.extension": "Extension",
    "Encounter.modifierExtension": "Extension",
    "Encounter.identifier": "Identifier",
    "Encounter.status": "code",
    "Encounter.statusHistory": None,
    "Encounter.statusHistory.status": "code",
    "Encounter.statusHistory.period": "Period",
    "Encounter.class": "Coding",
    "Encounter.classHistory": None,
    "Encounter.classHistory.class": "Coding",
    "Encounter.classHistory.period": "Period",
    "Encounter.type": "CodeableConcept",
    "Encounter.serviceType": "CodeableConcept",
    "Encounter.priority": "CodeableConcept",
    "Encounter.subject": "Reference",
    "Encounter.episodeOfCare": "Reference",
    "Encounter.basedOn": "Reference",
    "Encounter.participant": None,
    "Encounter.participant.type": "CodeableConcept",
    "Encounter.participant.period": "Period",
    "Encounter.participant.individual": "Reference",
    "Encounter.appointment": "Reference",
    "Encounter.period": "Period",
    "Encounter.length": "Duration",
    "Encounter.reasonCode": "CodeableConcept",
    "Encounter.reasonReference": "Reference",
    "Encounter.diagnosis": None,
    "Encounter.diagnosis.condition": "Reference",
    "Encounter.diagnosis.use": "CodeableConcept",
    "Encounter.diagnosis.rank": "positiveInt",
    "Encounter.account": "Reference",
    "Encounter.hospitalization": None,
    "Encounter.hospitalization.preAdmissionIdentifier": "Identifier",
    "Encounter.hospitalization.origin": "Reference",
    "Encounter.hospitalization.admitSource": "CodeableConcept",
    "Encounter.hospitalization.reAdmission": "CodeableConcept",
    "Encounter.hospitalization.dietPreference": "CodeableConcept",
    "Encounter.hospitalization.specialCourtesy": "CodeableConcept",
    "Encounter.hospitalization.specialArrangement": "CodeableConcept",
    "Encounter.hospitalization.destination": "Reference",
    "Encounter.hospitalization.dischargeDisposition": "CodeableConcept",
    "Encounter.location": None,
    "Encounter.location.location": "Reference",
    "Encounter.location.status": "code",
    "Encounter.location.physicalType": "CodeableConcept",
    "Encounter.location.period": "Period",
    "Encounter.serviceProvider": "Reference",
    "Encounter.partOf": "Reference",
}
# Children of the R4 data types the profile constrains inside.
R4_DATATYPE_ELEMENTS: dict[str, set[str]] = {
    "Identifier": {"id", "extension", "use", "type", "system", "value", "period", "assigner"},
    "Coding": {"id", "extension", "system", "version", "code", "display", "userSelected"},
    "CodeableConcept": {"id", "extension", "coding", "text"},
    "Period": {"id", "extension", "start", "end"},
    "Duration": {"id", "extension", "value", "comparator", "unit", "system", "code"},
    "Reference": {"id", "extension", "reference", "type", "identifier", "display"},
}

PROGRAM_CATEGORIES = {
    "preferred-name",
    "contact-details",
    "admission-discharge",
    "upcoming-appointments",
    "recovery-goals",
    "interests",
    "safety-considerations",
    "community-supports",
    "diagnosis",
    "clinical-notes",
}
CONTACT_KINDS = {
    "on-ward-one-to-one",
    "on-ward-group",
    "community-visit",
    "phone-video",
    "accompanied-appointment",
}


def _label(resource: dict[str, Any]) -> str:
    return f"{resource['resourceType']}-{resource['id']}"


ALL = fp.artifacts()
CONFORMANCE = [r for r in ALL if r["resourceType"] in CONFORMANCE_TYPES]


@pytest.mark.parametrize("resource", ALL, ids=_label)
def test_every_artifact_parses_with_its_r4b_model(resource: dict[str, Any]) -> None:
    kind = resource["resourceType"]
    model = getattr(importlib.import_module(f"fhir.resources.R4B.{kind.lower()}"), kind)
    parsed = model.model_validate(resource)
    assert parsed.id == resource["id"]


def test_each_file_is_named_after_the_resource_it_holds() -> None:
    folder = resources.files("fhir_profiles") / "data"
    files = [e for e in folder.iterdir() if e.name.endswith(".json")]
    assert files
    for entry in files:
        resource = json.loads(entry.read_text(encoding="utf-8"))
        assert entry.name == f"{_label(resource)}.json"
    assert len(files) == len(ALL)


@pytest.mark.parametrize("resource", CONFORMANCE, ids=_label)
def test_conformance_resources_have_canonical_url_and_metadata(resource: dict[str, Any]) -> None:
    assert resource["url"] == f"{fp.CANONICAL}/{resource['resourceType']}/{resource['id']}"
    assert resource["version"] == "0.1.0"
    assert resource["status"] in {"draft", "active"}
    assert resource["publisher"] == "Peerway"
    for key in ("name", "title", "description", "date"):
        assert resource[key].strip(), key
    assert resource["name"].isidentifier()  # a computable name, as FHIR asks
    if resource["resourceType"] in {"StructureDefinition", "CapabilityStatement"}:
        assert resource["fhirVersion"] == "4.0.1"
    assert fp.canonical_resource(resource["url"]) == resource


@pytest.mark.parametrize(
    ("naming_id", "system"),
    [("peer-contact", fp.CONTACT_IDENTIFIER_SYSTEM), ("peer-supporter", fp.PEER_IDENTIFIER_SYSTEM)],
)
def test_identifier_systems_are_published_as_naming_systems(naming_id: str, system: str) -> None:
    naming = fp.artifact("NamingSystem", naming_id)
    assert system == f"{fp.CANONICAL}/sid/{naming_id}"
    assert naming["kind"] == "identifier"
    assert naming["publisher"] == "Peerway"
    assert [(u["type"], u["value"], u["preferred"]) for u in naming["uniqueId"]] == [("uri", system, True)]


@pytest.mark.parametrize("resource", [r for r in ALL if r["resourceType"] == "CodeSystem"], ids=_label)
def test_code_systems_are_complete_and_consistent(resource: dict[str, Any]) -> None:
    url = resource["url"]
    assert resource["content"] == "complete"
    assert resource["caseSensitive"] is True
    assert resource["count"] == len(fp.codes(url))
    assert fp.canonical_resource(resource["valueSet"])["resourceType"] == "ValueSet"
    declared = {p["code"] for p in resource.get("property", [])}
    for code in fp.codes(url):
        assert fp.display(url, code)
        concept = _concept(resource["concept"], code)
        assert concept["definition"].strip()
        assert {p["code"] for p in concept.get("property", [])} <= declared


def _concept(concepts: list[dict[str, Any]], code: str) -> dict[str, Any]:
    for concept in concepts:
        if concept["code"] == code:
            return concept
        if found := _concept(concept.get("concept", []), code):
            return found
    return {}


@pytest.mark.parametrize("resource", [r for r in ALL if r["resourceType"] == "ValueSet"], ids=_label)
def test_every_valueset_code_exists_in_its_code_system(resource: dict[str, Any]) -> None:
    pairs = fp.valueset_codes(resource["url"])
    assert pairs
    for system, code in pairs:
        if system in CORE_CODES:  # a FHIR core system our ValueSet narrows (peer-contact-status)
            assert code in CORE_CODES[system], (system, code)
            continue
        assert system.startswith(fp.CANONICAL)
        assert fp.check_codes(system, code), (system, code)


# R4 http://hl7.org/fhir/encounter-status (the required binding of Encounter.status in the base resource).
CORE_CODES = {
    "http://hl7.org/fhir/encounter-status": frozenset(
        [
            "planned",
            "arrived",
            "triaged",
            "in-progress",
            "onleave",
            "finished",
            "cancelled",
            "entered-in-error",
            "unknown",
        ]
    )
}


def test_data_categories_are_the_programs_list_with_diagnosis_and_notes_explicit_only() -> None:
    system = fp.DATA_CATEGORY_SYSTEM
    assert fp.codes(system) == PROGRAM_CATEGORIES
    assert fp.valueset_codes(fp.DATA_CATEGORY_VALUESET) == {(system, c) for c in PROGRAM_CATEGORIES}
    explicit_only = {c for c in fp.codes(system) if fp.concept_property(system, c, "explicit-only") is True}
    assert explicit_only == {"diagnosis", "clinical-notes"}
    assert all(isinstance(fp.concept_property(system, c, "explicit-only"), bool) for c in PROGRAM_CATEGORIES)


def test_contact_kinds_are_five_leaves_under_peer_support() -> None:
    system = fp.PEER_CONTACT_KIND_SYSTEM
    (root,) = fp.artifact("CodeSystem", "peer-contact-kind")["concept"]
    assert (root["code"], root["display"]) == ("peer-support", "Peer support contact")
    assert {c["code"] for c in root["concept"]} == CONTACT_KINDS
    assert fp.codes(system) == CONTACT_KINDS | {"peer-support"}
    assert fp.valueset_codes(fp.PEER_CONTACT_KIND_VALUESET) == {(system, c) for c in CONTACT_KINDS}
    assert fp.concept_property(system, "peer-support", "notSelectable") is True
    # The service's own words for contact kinds must be exactly the codes it writes to the EHR.
    assert {k.value for k in ContactKind} == CONTACT_KINDS


@pytest.mark.parametrize(
    ("kind", "encounter_class"),
    [
        ("on-ward-one-to-one", "IMP"),
        ("on-ward-group", "IMP"),
        ("community-visit", "FLD"),
        ("phone-video", "VR"),
        ("accompanied-appointment", "AMB"),
    ],
)
def test_each_contact_kind_names_its_encounter_class(kind: str, encounter_class: str) -> None:
    coding = fp.concept_property(fp.PEER_CONTACT_KIND_SYSTEM, kind, "encounter-class")
    assert isinstance(coding, dict)
    assert coding["system"] == "http://terminology.hl7.org/CodeSystem/v3-ActCode"
    assert coding["code"] == encounter_class


def test_participant_roles() -> None:
    system = fp.PARTICIPANT_ROLE_SYSTEM
    roles = {"peer-supporter", "assigned-peer-supporter", "peer-support-coordinator"}
    assert fp.codes(system) == roles
    assert fp.valueset_codes(fp.PARTICIPANT_ROLE_VALUESET) == {(system, r) for r in roles}


def test_lookups_refuse_what_is_not_ours() -> None:
    with pytest.raises(KeyError):
        fp.codes("http://terminology.hl7.org/CodeSystem/v3-ActCode")
    with pytest.raises(KeyError):
        fp.display(fp.DATA_CATEGORY_SYSTEM, "diagnoses")
    with pytest.raises(KeyError):
        fp.artifact("CodeSystem", "nope")
    assert fp.check_codes(fp.PEER_CONTACT_KIND_SYSTEM, "phone-video")
    assert not fp.check_codes(fp.PEER_CONTACT_KIND_SYSTEM, "phone")


def test_artifact_returns_a_copy() -> None:
    fp.artifact("CodeSystem", "data-category")["concept"].clear()
    assert fp.codes(fp.DATA_CATEGORY_SYSTEM) == PROGRAM_CATEGORIES
    assert len(fp.artifact("CodeSystem", "data-category")["concept"]) == len(PROGRAM_CATEGORIES)


# --- the peer-contact profile ---------------------------------------------------------------------------

PROFILE = fp.artifact("StructureDefinition", "peer-contact")
DIFFERENTIAL = {e["id"]: e for e in PROFILE["differential"]["element"]}


def test_r4_encounter_list_matches_the_r4b_model() -> None:
    # R4B did not change Encounter; the model's fields are a second witness for the hand-made list.
    fields = {
        "class" if name == "class_fhir" else name
        for name in Encounter.model_fields
        if name != "fhir_comments" and not name.endswith("__ext")
    }
    assert {p.split(".")[1] for p in R4_ENCOUNTER} == fields


def test_profile_is_an_encounter_constraint() -> None:
    assert PROFILE["url"] == fp.PEER_CONTACT_PROFILE
    assert (PROFILE["kind"], PROFILE["type"], PROFILE["derivation"]) == (
        "resource",
        "Encounter",
        "constraint",
    )
    assert PROFILE["baseDefinition"] == "http://hl7.org/fhir/StructureDefinition/Encounter"
    assert "snapshot" not in PROFILE


@pytest.mark.parametrize("element", PROFILE["differential"]["element"], ids=lambda e: e["id"])
def test_differential_names_only_r4_encounter_paths(element: dict[str, Any]) -> None:
    path = element["path"]
    # An id is its path with slice names (":name") added.
    assert ".".join(step.split(":")[0] for step in element["id"].split(".")) == path
    if path == "Encounter" or path in R4_ENCOUNTER:
        return
    parent, child = path.rsplit(".", 1)
    datatype = R4_ENCOUNTER[parent]
    assert datatype is not None, path
    assert child in R4_DATATYPE_ELEMENTS[datatype], path


@pytest.mark.parametrize("element", PROFILE["differential"]["element"], ids=lambda e: e["id"])
def test_differential_elements_are_well_formed(element: dict[str, Any]) -> None:
    if "min" in element:
        assert isinstance(element["min"], int)
    if "max" in element:
        assert isinstance(element["max"], str)
        assert element["max"] == "*" or element["max"].isdigit()
    if "min" in element and element.get("max", "*") != "*":
        assert element["min"] <= int(element["max"])
    if "binding" in element:
        assert element["binding"]["strength"] in {"required", "extensible", "preferred", "example"}
        assert fp.canonical_resource(element["binding"]["valueSet"])["resourceType"] == "ValueSet"
    if ":" in element["id"].rsplit(".", 1)[-1]:
        sliced = DIFFERENTIAL[element["id"].rsplit(":", 1)[0]]
        assert sliced["slicing"]["discriminator"]


@pytest.mark.parametrize(
    ("element_id", "rule"),
    [
        ("Encounter.identifier", {"min": 1}),
        ("Encounter.identifier:peerway.system", {"fixedUri": fp.CONTACT_IDENTIFIER_SYSTEM}),
        (
            "Encounter.status",
            {"binding": {"strength": "required", "valueSet": f"{fp.CANONICAL}/ValueSet/peer-contact-status"}},
        ),
        ("Encounter.class", {"min": 1, "max": "1"}),
        ("Encounter.type", {"min": 1, "max": "1"}),
        ("Encounter.subject", {"min": 1, "max": "1"}),
        ("Encounter.participant", {"min": 1}),
        ("Encounter.participant.individual", {"min": 1, "max": "1"}),
        ("Encounter.period", {"min": 1, "max": "1"}),
        ("Encounter.period.start", {"min": 1}),
        ("Encounter.length", {"min": 1, "max": "1"}),
        ("Encounter.length.code", {"fixedCode": "min"}),
        ("Encounter.text", {"max": "0"}),
        ("Encounter.reasonCode", {"max": "0"}),
        ("Encounter.reasonReference", {"max": "0"}),
        ("Encounter.diagnosis", {"max": "0"}),
        ("Encounter.partOf", {"max": "1"}),
        ("Encounter.serviceProvider", {"max": "1"}),
    ],
)
def test_profile_states_the_contact_rules(element_id: str, rule: dict[str, Any]) -> None:
    element = DIFFERENTIAL[element_id]
    assert {k: element.get(k) for k in rule} == rule


def test_profile_binds_type_to_contact_kinds_and_targets_patient_and_peer() -> None:
    binding = DIFFERENTIAL["Encounter.type"]["binding"]
    assert (binding["strength"], binding["valueSet"]) == ("required", fp.PEER_CONTACT_KIND_VALUESET)
    (subject_type,) = DIFFERENTIAL["Encounter.subject"]["type"]
    assert subject_type == {
        "code": "Reference",
        "targetProfile": ["http://hl7.org/fhir/StructureDefinition/Patient"],
    }
    (individual_type,) = DIFFERENTIAL["Encounter.participant.individual"]["type"]
    assert individual_type["targetProfile"] == [
        "http://hl7.org/fhir/StructureDefinition/Practitioner",
        "http://hl7.org/fhir/StructureDefinition/PractitionerRole",
    ]


def test_class_invariant_agrees_with_the_code_systems_encounter_class() -> None:
    system = fp.PEER_CONTACT_KIND_SYSTEM
    expected = " and ".join(
        f"(type.coding.where(system='{system}' and code='{kind}').exists() implies class.code='{_class_of(kind)}')"
        for kind in ContactKind
    )
    (invariant,) = DIFFERENTIAL["Encounter"]["constraint"]
    assert invariant["key"] == "pwc-1"
    assert invariant["expression"] == expected


def _class_of(kind: str) -> str:
    coding = fp.concept_property(fp.PEER_CONTACT_KIND_SYSTEM, kind, "encounter-class")
    assert isinstance(coding, dict)
    return str(coding["code"])


# --- the checker, on the published example ----------------------------------------------------------------

EXAMPLE = fp.artifact("Encounter", "peer-contact-example")


def test_example_conforms_and_follows_the_class_rule() -> None:
    assert EXAMPLE["meta"]["profile"] == [fp.PEER_CONTACT_PROFILE]
    assert fp.check_conformance(EXAMPLE, fp.PEER_CONTACT_PROFILE) == []
    (kind,) = EXAMPLE["type"][0]["coding"]
    assert EXAMPLE["class"]["code"] == _class_of(kind["code"])


def _set(path: str, value: Any) -> dict[str, Any]:
    changed = copy.deepcopy(EXAMPLE)
    *parents, last = path.split(".")
    target: Any = changed
    for step in parents:
        target = target[int(step)] if step.isdigit() else target[step]
    if value is None:
        del target[last]
    else:
        target[last] = value
    return changed


@pytest.mark.parametrize(
    ("changed", "expression", "says"),
    [
        (_set("status", "in-progress"), "Encounter.status", "no code from"),
        (_set("text", {"status": "generated", "div": "<div>notes</div>"}), "Encounter.text", "not allowed"),
        (_set("reasonCode", [{"text": "low mood"}]), "Encounter.reasonCode", "not allowed"),
        (
            _set("diagnosis", [{"condition": {"reference": "Condition/1"}}]),
            "Encounter.diagnosis",
            "not allowed",
        ),
        (
            _set("identifier", [{"system": "urn:ehr", "value": "1"}]),
            "Encounter.identifier",
            "identifier:peerway: at least 1",
        ),
        (_set("identifier.0.value", None), "Encounter.identifier[0].value", "peerway.value: at least 1"),
        (
            _set("type.0.coding.0.code", "peer-support"),
            "Encounter.type[0]",
            "no code from https://peerway.github.io/fhir/ValueSet/peer-contact-kind",
        ),
        (_set("type", None), "Encounter.type", "type: at least 1"),
        (_set("subject", {"reference": "Group/1"}), "Encounter.subject", "must refer to Patient, not Group"),
        (
            _set("participant.0.individual", {"reference": "RelatedPerson/mum"}),
            "Encounter.participant[0].individual",
            "not RelatedPerson",
        ),
        (_set("participant", []), "Encounter.participant", "participant: at least 1"),
        (_set("period.start", None), "Encounter.period.start", "period.start: at least 1"),
        (_set("length.code", "h"), "Encounter.length.code", "must be 'min'"),
        (_set("class.system", "urn:other"), "Encounter.class.system", "v3-ActCode"),
    ],
)
def test_checker_reports_what_breaks_the_profile(changed: dict[str, Any], expression: str, says: str) -> None:
    problems = fp.check_conformance(changed, fp.PEER_CONTACT_PROFILE)
    assert any(p.expression == expression and says in p.message for p in problems), problems


def test_checker_accepts_another_identifier_beside_ours_and_a_logical_subject() -> None:
    changed = _set("identifier", [{"system": "urn:ehr", "value": "1"}, *EXAMPLE["identifier"]])
    changed["subject"] = {"identifier": {"system": "urn:mrn", "value": "42"}}
    assert fp.check_conformance(changed, fp.PEER_CONTACT_PROFILE) == []


def test_checker_refuses_another_resource_type() -> None:
    (problem,) = fp.check_conformance({"resourceType": "Patient"}, fp.PEER_CONTACT_PROFILE)
    assert problem.expression == "Encounter"
