"""fhir_profiles for matching: peer supporters as Practitioner + PractitionerRole, their extensions and codes.

The artifact-wide checks (every file parses with its R4B model, urls and metadata, every CodeSystem complete
and every ValueSet code in its system) are in test_profiles.py and cover these artifacts too; here is what
matching needs of them, and the checker on the peer-supporter-role profile and its extension slices.
"""

from __future__ import annotations

import copy
import itertools
from typing import Any

import pytest
from fhir.resources.R4B.practitioner import Practitioner
from fhir.resources.R4B.practitionerrole import PractitionerRole

import fhir_profiles as fp
from fhir_profiles import registry

CORE = "http://hl7.org/fhir/StructureDefinition/"
ADMINISTRATIVE_GENDER = "http://hl7.org/fhir/ValueSet/administrative-gender"
BCP_47 = "urn:ietf:bcp:47"

# --- code systems ---------------------------------------------------------------------------------------

CODE_SYSTEMS: dict[str, tuple[str, str, dict[str, str]]] = {
    "peer-status": (
        fp.PEER_STATUS_SYSTEM,
        fp.PEER_STATUS_VALUESET,
        {"active": "Active", "paused": "Paused", "inactive": "Inactive"},
    ),
    "support-kind": (
        fp.SUPPORT_KIND_SYSTEM,
        fp.SUPPORT_KIND_VALUESET,
        {
            "on-ward-groups": "On-ward group meetings",
            "on-ward-one-to-one": "On-ward one-to-one meetings",
            "community-visits": "Community visits",
            "accompanying-appointments": "Accompanying to appointments",
            "phone-support": "Phone support",
        },
    ),
    "age-band": (
        fp.AGE_BAND_SYSTEM,
        fp.AGE_BAND_VALUESET,
        {
            "18-24": "18 to 24",
            "25-34": "25 to 34",
            "35-44": "35 to 44",
            "45-54": "45 to 54",
            "55-64": "55 to 64",
            "65-plus": "65 and over",
        },
    ),
    "rematch-reason": (
        fp.REMATCH_REASON_SYSTEM,
        fp.REMATCH_REASON_VALUESET,
        {
            "no-connection": "No connection",
            "client-request": "Client asked for another peer",
            "peer-request": "Peer asked to step back",
            "peer-unavailable": "Peer unavailable",
            "safety": "Safety concern",
            "other": "Other reason",
        },
    ),
    "episode-end-reason": (
        fp.EPISODE_END_REASON_SYSTEM,
        fp.EPISODE_END_REASON_VALUESET,
        {
            "completed": "Completed",
            "client-withdrew": "Client withdrew",
            "no-contact": "No contact",
            "admission-cancelled": "Admission cancelled",
        },
    ),
}


@pytest.mark.parametrize("id_", CODE_SYSTEMS)
def test_code_system_has_the_programs_codes_and_a_valueset_of_all_of_them(id_: str) -> None:
    system, valueset, displays = CODE_SYSTEMS[id_]
    assert system == f"{fp.CANONICAL}/CodeSystem/{id_}"
    assert valueset == f"{fp.CANONICAL}/ValueSet/{id_}"
    assert fp.codes(system) == set(displays)
    assert {code: fp.display(system, code) for code in displays} == displays
    assert fp.valueset_codes(valueset) == {(system, code) for code in displays}
    code_system = fp.canonical_resource(system)
    assert code_system["valueSet"] == valueset
    assert code_system["status"] == "active"
    assert [c["code"] for c in code_system["concept"]] == list(displays)  # flat, in the program's order


def test_peer_status_definitions_say_who_can_be_matched() -> None:
    definitions = {c["code"]: c["definition"] for c in fp.artifact("CodeSystem", "peer-status")["concept"]}
    assert definitions["active"].startswith("Active: can be matched")
    assert definitions["paused"].startswith("Paused: the peer is feeling triggered or is away")
    assert "nobody is assigned to them" in definitions["paused"]
    assert definitions["inactive"].startswith("Inactive: no longer in the program")


def test_no_connection_means_the_pair_did_not_click() -> None:
    (concept,) = [c for c in fp.artifact("CodeSystem", "rematch-reason")["concept"] if c["code"] == "no-connection"]
    assert concept["definition"].startswith("The pair did not click")


@pytest.mark.parametrize(
    ("band", "low", "high"),
    [
        ("18-24", 18, 24),
        ("25-34", 25, 34),
        ("35-44", 35, 44),
        ("45-54", 45, 54),
        ("55-64", 55, 64),
        ("65-plus", 65, None),
    ],
)
def test_each_age_band_gives_its_ends(band: str, low: int, high: int | None) -> None:
    assert fp.concept_property(fp.AGE_BAND_SYSTEM, band, "min-age") == low
    assert fp.concept_property(fp.AGE_BAND_SYSTEM, band, "max-age") == high


def test_age_bands_follow_on_without_gaps() -> None:
    bands = [c["code"] for c in fp.artifact("CodeSystem", "age-band")["concept"]]
    for younger, older in itertools.pairwise(bands):
        upper = fp.concept_property(fp.AGE_BAND_SYSTEM, younger, "max-age")
        assert isinstance(upper, int)
        assert fp.concept_property(fp.AGE_BAND_SYSTEM, older, "min-age") == upper + 1


# --- extensions ------------------------------------------------------------------------------------------

# id -> (constant, context, value type or None for the complex one, required ValueSet, max on its element)
EXTENSIONS: dict[str, tuple[str, str, str | None, str | None, str]] = {
    "peer-status": (fp.EXT_PEER_STATUS, "PractitionerRole", "code", fp.PEER_STATUS_VALUESET, "1"),
    "peer-age-band": (fp.EXT_AGE_BAND, "Practitioner", "code", fp.AGE_BAND_VALUESET, "1"),
    "peer-interest": (fp.EXT_INTEREST, "PractitionerRole", "string", None, "*"),
    "peer-neighbourhood": (fp.EXT_NEIGHBOURHOOD, "PractitionerRole", "string", None, "1"),
    "peer-weekly-hours": (fp.EXT_WEEKLY_HOURS, "PractitionerRole", "decimal", None, "1"),
    "peer-caseload-cap": (fp.EXT_CASELOAD_CAP, "PractitionerRole", "positiveInt", None, "1"),
    "peer-client-preference": (fp.EXT_CLIENT_PREFERENCE, "PractitionerRole", None, None, "1"),
}
# R4 Extension: id, extension, url, value[x] (https://hl7.org/fhir/R4/extensibility.html#Extension).
R4_EXTENSION_CHILDREN = {"id", "extension", "url", "value[x]"}


def _differential(definition: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["id"]: e for e in definition["differential"]["element"]}


@pytest.mark.parametrize("id_", EXTENSIONS)
def test_extension_definition_has_the_r4_extension_shape(id_: str) -> None:
    url, context, _, _, max_ = EXTENSIONS[id_]
    definition = fp.artifact("StructureDefinition", id_)
    assert definition["url"] == url == f"{fp.CANONICAL}/StructureDefinition/{id_}"
    assert (definition["kind"], definition["type"], definition["derivation"]) == (
        "complex-type",
        "Extension",
        "constraint",
    )
    assert definition["abstract"] is False
    assert definition["baseDefinition"] == f"{CORE}Extension"
    assert definition["context"] == [{"type": "element", "expression": context}]
    assert "snapshot" not in definition
    elements = _differential(definition)
    assert elements["Extension"]["max"] == max_
    assert elements["Extension.url"]["fixedUri"] == url
    for element in elements.values():
        # An id is its path with slice names added; every step is an element of R4 Extension.
        assert ".".join(step.split(":")[0] for step in element["id"].split(".")) == element["path"]
        assert set(element["path"].split(".")[1:]) <= R4_EXTENSION_CHILDREN, element["id"]
        if "sliceName" in element:
            assert element["id"].endswith(f":{element['sliceName']}")


@pytest.mark.parametrize("id_", [i for i, spec in EXTENSIONS.items() if spec[2] is not None])
def test_simple_extension_has_one_value_of_its_type(id_: str) -> None:
    _, _, value_type, valueset, _ = EXTENSIONS[id_]
    elements = _differential(fp.artifact("StructureDefinition", id_))
    assert elements["Extension.extension"]["max"] == "0"
    value = elements["Extension.value[x]"]
    assert value["min"] == 1
    assert value["type"] == [{"code": value_type}]
    if valueset is None:
        assert "binding" not in value
    else:
        assert (value["binding"]["strength"], value["binding"]["valueSet"]) == ("required", valueset)


def test_client_preference_is_a_complex_extension_of_age_range_and_genders() -> None:
    elements = _differential(fp.artifact("StructureDefinition", "peer-client-preference"))
    assert elements["Extension.value[x]"]["max"] == "0"
    assert elements["Extension.extension"]["slicing"]["discriminator"] == [{"type": "value", "path": "url"}]
    parts = {
        "min-age": ("1", [{"code": "integer"}]),
        "max-age": ("1", [{"code": "integer"}]),
        "gender": ("*", [{"code": "code"}]),
    }
    slices = {e["sliceName"] for e in elements.values() if "sliceName" in e}
    assert slices == set(parts)
    for name, (max_, types) in parts.items():
        base = f"Extension.extension:{name}"
        assert (elements[base]["min"], elements[base]["max"]) == (0, max_)
        assert elements[f"{base}.url"]["fixedUri"] == name
        assert elements[f"{base}.extension"]["max"] == "0"
        assert elements[f"{base}.value[x]"]["type"] == types
        assert elements[f"{base}.value[x]"]["min"] == 1
    binding = elements["Extension.extension:gender.value[x]"]["binding"]
    assert (binding["strength"], binding["valueSet"]) == ("required", ADMINISTRATIVE_GENDER)
    (invariant,) = elements["Extension"]["constraint"]
    assert invariant["key"] == "pwp-1"
    assert invariant["source"] == fp.EXT_CLIENT_PREFERENCE


# --- the peer-supporter-role profile ------------------------------------------------------------------------

PROFILE = fp.artifact("StructureDefinition", "peer-supporter-role")
DIFFERENTIAL = _differential(PROFILE)

# R4 (4.0.1) PractitionerRole elements, as listed on https://hl7.org/fhir/R4/practitionerrole-dependencies.html,
# plus those inherited from DomainResource.
R4_PRACTITIONER_ROLE = {
    "id",
    "meta",
    "implicitRules",
    "language",
    "text",
    "contained",
    "extension",
    "modifierExtension",
    "identifier",
    "active",
    "period",
    "practitioner",
    "organization",
    "code",
    "specialty",
    "location",
    "healthcareService",
    "telecom",
    "availableTime",
    "notAvailable",
    "availabilityExceptions",
    "endpoint",
}
# Extension slice name -> (extension url, min, max)
EXTENSION_SLICES = {
    "status": (fp.EXT_PEER_STATUS, 1, "1"),
    "interest": (fp.EXT_INTEREST, 0, "*"),
    "neighbourhood": (fp.EXT_NEIGHBOURHOOD, 0, "1"),
    "weeklyHours": (fp.EXT_WEEKLY_HOURS, 0, "1"),
    "caseloadCap": (fp.EXT_CASELOAD_CAP, 1, "1"),
    "clientPreference": (fp.EXT_CLIENT_PREFERENCE, 0, "1"),
}


def test_r4_practitioner_role_list_matches_the_r4b_model() -> None:
    fields = {name for name in PractitionerRole.model_fields if name != "fhir_comments" and not name.endswith("__ext")}
    assert fields == R4_PRACTITIONER_ROLE


def test_profile_is_a_practitioner_role_constraint() -> None:
    assert PROFILE["url"] == fp.PEER_SUPPORTER_ROLE_PROFILE
    assert (PROFILE["kind"], PROFILE["type"], PROFILE["derivation"]) == (
        "resource",
        "PractitionerRole",
        "constraint",
    )
    assert PROFILE["baseDefinition"] == f"{CORE}PractitionerRole"
    assert "snapshot" not in PROFILE
    assert "diagnos" in PROFILE["description"]  # says that matching is never on diagnosis


@pytest.mark.parametrize("element", PROFILE["differential"]["element"], ids=lambda e: e["id"])
def test_profile_names_only_r4_practitioner_role_paths(element: dict[str, Any]) -> None:
    path = element["path"]
    assert ".".join(step.split(":")[0] for step in element["id"].split(".")) == path
    steps = path.split(".")
    assert steps[0] == "PractitionerRole"
    if len(steps) > 1:
        assert steps[1] in R4_PRACTITIONER_ROLE, path
    if len(steps) > 2:  # only the url of an extension slice
        assert steps[1:] == ["extension", "url"], path
    if "min" in element and element.get("max", "*") != "*":
        assert element["min"] <= int(element["max"])
    if "binding" in element:
        assert fp.canonical_resource(element["binding"]["valueSet"])["resourceType"] == "ValueSet"
    if "sliceName" in element:
        assert element["id"].endswith(f":{element['sliceName']}")
        assert DIFFERENTIAL[element["id"].rsplit(":", 1)[0]]["slicing"]["discriminator"]


def test_extensions_are_sliced_by_url_and_typed_by_our_extension_definitions() -> None:
    assert DIFFERENTIAL["PractitionerRole.extension"]["slicing"]["discriminator"] == [{"type": "value", "path": "url"}]
    assert DIFFERENTIAL["PractitionerRole.extension"]["slicing"]["rules"] == "open"
    slices = {
        e["sliceName"] for e in DIFFERENTIAL.values() if e["path"] == "PractitionerRole.extension" and "sliceName" in e
    }
    assert slices == set(EXTENSION_SLICES)
    for name, (url, low, high) in EXTENSION_SLICES.items():
        element = DIFFERENTIAL[f"PractitionerRole.extension:{name}"]
        assert (element["min"], element["max"]) == (low, high)
        assert element["type"] == [{"code": "Extension", "profile": [url]}]
        # The url the extension definition fixes, restated so that validators need not open it.
        assert DIFFERENTIAL[f"PractitionerRole.extension:{name}.url"]["fixedUri"] == url
        definition = fp.canonical_resource(url)
        assert definition["context"] == [{"type": "element", "expression": "PractitionerRole"}]
        assert definition["differential"]["element"][0]["max"] == high


def test_every_practitioner_role_extension_is_in_the_profile() -> None:
    on_role = {url for url, context, *_ in EXTENSIONS.values() if context == "PractitionerRole"}
    assert on_role == {url for url, _, _ in EXTENSION_SLICES.values()}


def test_profile_requires_the_peer_supporter_role_and_a_practitioner() -> None:
    code = DIFFERENTIAL["PractitionerRole.code"]
    assert code["min"] == 1
    assert code["slicing"]["discriminator"] == [{"type": "pattern", "path": "$this"}]
    peer = DIFFERENTIAL["PractitionerRole.code:peerSupporter"]
    assert (peer["min"], peer["max"]) == (1, "1")
    assert peer["patternCodeableConcept"] == {
        "coding": [{"system": fp.PARTICIPANT_ROLE_SYSTEM, "code": "peer-supporter"}]
    }
    practitioner = DIFFERENTIAL["PractitionerRole.practitioner"]
    assert (practitioner["min"], practitioner["max"]) == (1, "1")
    assert practitioner["type"] == [{"code": "Reference", "targetProfile": [f"{CORE}Practitioner"]}]
    specialty = DIFFERENTIAL["PractitionerRole.specialty"]["binding"]
    assert (specialty["strength"], specialty["valueSet"]) == ("extensible", fp.SUPPORT_KIND_VALUESET)


# --- the examples ---------------------------------------------------------------------------------------------

PEER = fp.artifact("Practitioner", "peer-example")
ROLE = fp.artifact("PractitionerRole", "peer-example")


def test_practitioner_example_has_languages_as_bcp47_and_an_age_band() -> None:
    Practitioner.model_validate(PEER)
    assert PEER["name"]
    assert PEER["gender"] in {"male", "female", "other", "unknown"}
    languages = [coding for concept in PEER["communication"] for coding in concept["coding"]]
    assert languages
    assert {c["system"] for c in languages} == {BCP_47}
    assert all(c["code"].isalpha() and c["code"].islower() for c in languages)
    (band,) = [e for e in PEER["extension"] if e["url"] == fp.EXT_AGE_BAND]
    assert fp.check_codes(fp.AGE_BAND_SYSTEM, band["valueCode"])
    assert fp.check_conformance(band, fp.EXT_AGE_BAND) == []
    assert PEER["identifier"][0]["system"] == fp.PEER_IDENTIFIER_SYSTEM


def test_role_example_conforms_and_names_its_practitioner() -> None:
    PractitionerRole.model_validate(ROLE)
    assert ROLE["meta"]["profile"] == [fp.PEER_SUPPORTER_ROLE_PROFILE]
    assert fp.check_conformance(ROLE, fp.PEER_SUPPORTER_ROLE_PROFILE) == []
    assert ROLE["practitioner"]["reference"] == f"Practitioner/{PEER['id']}"
    assert ROLE["identifier"] == PEER["identifier"]
    specialties = {(c["system"], c["code"]) for s in ROLE["specialty"] for c in s["coding"]}
    assert specialties <= fp.valueset_codes(fp.SUPPORT_KIND_VALUESET)
    urls = [e["url"] for e in ROLE["extension"]]
    assert set(urls) == {url for url, _, _ in EXTENSION_SLICES.values()}  # the example shows every one
    assert urls.count(fp.EXT_INTEREST) == 2


# --- the checker on the profile, extension slices included -------------------------------------------------------


def _role_with(change: Any) -> dict[str, Any]:
    changed = copy.deepcopy(ROLE)
    change(changed)
    return changed


def _extension(resource: dict[str, Any], url: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [e for e in resource["extension"] if e["url"] == url]
    assert len(found) == 1
    return found[0]


def _drop(url: str) -> Any:
    return lambda r: r.update(extension=[e for e in r["extension"] if e["url"] != url])


def _replace(url: str, **value: Any) -> Any:
    return lambda r: r.update(extension=[{"url": url, **value} if e["url"] == url else e for e in r["extension"]])


def _preference(*parts: dict[str, Any]) -> Any:
    return _replace(fp.EXT_CLIENT_PREFERENCE, extension=list(parts))


@pytest.mark.parametrize(
    ("change", "expression", "says"),
    [
        (_drop(fp.EXT_PEER_STATUS), "PractitionerRole.extension", "extension:status: at least 1 required, found 0"),
        (
            lambda r: r["extension"].append({"url": fp.EXT_PEER_STATUS, "valueCode": "paused"}),
            "PractitionerRole.extension",
            "extension:status: at most 1 allowed, found 2",
        ),
        (
            _replace(fp.EXT_PEER_STATUS, valueCode="on-leave"),
            "PractitionerRole.extension[0].valueCode",
            f"peer-status: value[x]: no code from {fp.PEER_STATUS_VALUESET}",
        ),
        (
            _replace(fp.EXT_PEER_STATUS, valueCoding={"system": fp.PEER_STATUS_SYSTEM, "code": "active"}),
            "PractitionerRole.extension[0].valueCoding",
            "peer-status: value[x]: must be valueCode, found valueCoding",
        ),
        (_replace(fp.EXT_PEER_STATUS), "PractitionerRole.extension[0].value[x]", "peer-status: value[x]: at least 1"),
        (_drop(fp.EXT_CASELOAD_CAP), "PractitionerRole.extension", "extension:caseloadCap: at least 1 required"),
        (
            _replace(fp.EXT_CASELOAD_CAP, valueString="3"),
            "PractitionerRole.extension[5].valueString",
            "peer-caseload-cap: value[x]: must be valuePositiveInt, found valueString",
        ),
        (
            _replace(fp.EXT_WEEKLY_HOURS, valueString="six"),
            "PractitionerRole.extension[4].valueString",
            "must be valueDecimal",
        ),
        (
            lambda r: r["extension"].append({"url": fp.EXT_NEIGHBOURHOOD, "valueString": "Harbourside"}),
            "PractitionerRole.extension",
            "extension:neighbourhood: at most 1 allowed, found 2",
        ),
        (
            _replace(fp.EXT_INTEREST, extension=[{"url": "what", "valueString": "tennis"}]),
            "PractitionerRole.extension[1].extension",
            "peer-interest: extension: not allowed",
        ),
        (
            _preference({"url": "min-age", "valueInteger": 20}, {"url": "min-age", "valueInteger": 30}),
            "PractitionerRole.extension[6].extension",
            "peer-client-preference: extension:min-age: at most 1 allowed, found 2",
        ),
        (
            _preference({"url": "max-age", "valueString": "sixty"}),
            "PractitionerRole.extension[6].extension[0].valueString",
            "peer-client-preference: extension:max-age.value[x]: must be valueInteger",
        ),
        (
            _preference({"url": "gender"}),
            "PractitionerRole.extension[6].extension[0].value[x]",
            "extension:gender.value[x]: at least 1",
        ),
        (
            lambda r: _extension(r, fp.EXT_CLIENT_PREFERENCE).update(valueString="women over 30"),
            "PractitionerRole.extension[6].value[x]",
            "peer-client-preference: value[x]: not allowed",
        ),
        (_preference(), "PractitionerRole.extension[6].extension", "peer-client-preference: extension: at least 1"),
        (
            lambda r: r["code"][0]["coding"][0].update(code="peer-support-coordinator"),
            "PractitionerRole.code",
            "code:peerSupporter: at least 1 required, found 0",
        ),
        (lambda r: r.pop("code"), "PractitionerRole.code", "code: at least 1 required, found 0"),
        (lambda r: r.pop("practitioner"), "PractitionerRole.practitioner", "practitioner: at least 1 required"),
        (
            lambda r: r.update(practitioner={"reference": "Patient/1"}),
            "PractitionerRole.practitioner",
            "practitioner: must refer to Practitioner, not Patient",
        ),
    ],
)
def test_checker_reports_what_breaks_the_role_profile(change: Any, expression: str, says: str) -> None:
    problems = fp.check_conformance(_role_with(change), fp.PEER_SUPPORTER_ROLE_PROFILE)
    assert any(p.expression == expression and says in p.message for p in problems), problems


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda r: r["extension"].append({"url": "urn:other", "valueString": "x"}), id="other-extension"),
        pytest.param(_drop(fp.EXT_INTEREST), id="no-interests"),
        pytest.param(
            lambda r: r["extension"].extend({"url": fp.EXT_INTEREST, "valueString": s} for s in ("chess", "walks")),
            id="more-interests",
        ),
        pytest.param(_drop(fp.EXT_CLIENT_PREFERENCE), id="no-preference"),
        pytest.param(_preference({"url": "gender", "valueCode": "male"}), id="gender-only"),
        pytest.param(lambda r: r["extension"].reverse(), id="any-order"),
        pytest.param(
            lambda r: r["code"].insert(0, {"coding": [{"system": "urn:ehr:roles", "code": "volunteer"}]}),
            id="another-role-code",
        ),
        pytest.param(lambda r: r["specialty"].append({"text": "peer mentoring"}), id="extensible-specialty"),
        pytest.param(
            lambda r: r.update(practitioner={"identifier": {"system": fp.PEER_IDENTIFIER_SYSTEM, "value": "1"}}),
            id="logical-practitioner",
        ),
    ],
)
def test_checker_accepts_what_the_profile_allows(change: Any) -> None:
    assert fp.check_conformance(_role_with(change), fp.PEER_SUPPORTER_ROLE_PROFILE) == []


@pytest.mark.parametrize(
    ("extension", "url", "problem"),
    [
        ({"url": fp.EXT_AGE_BAND, "valueCode": "65-plus"}, fp.EXT_AGE_BAND, None),
        ({"url": fp.EXT_AGE_BAND, "valueCode": "70-79"}, fp.EXT_AGE_BAND, ("Extension.valueCode", "no code from")),
        ({"url": fp.EXT_INTEREST, "valueString": "tennis"}, fp.EXT_AGE_BAND, ("Extension.url", "must be")),
        ({"url": fp.EXT_WEEKLY_HOURS, "valueDecimal": 4.5}, fp.EXT_WEEKLY_HOURS, None),
        ({"resourceType": "PractitionerRole"}, fp.EXT_PEER_STATUS, ("Extension", "expected an Extension")),
    ],
)
def test_checker_checks_an_extension_on_its_own(
    extension: dict[str, Any], url: str, problem: tuple[str, str] | None
) -> None:
    problems = fp.check_conformance(extension, url)
    if problem is None:
        assert problems == []
    else:
        assert any(p.expression == problem[0] and problem[1] in p.message for p in problems), problems


def test_checker_takes_an_extension_slices_url_from_its_definition(monkeypatch: pytest.MonkeyPatch) -> None:
    # The usual differential types a slice by the extension's profile and does not restate its url.
    bare = copy.deepcopy(PROFILE)
    bare["url"] = f"{fp.CANONICAL}/StructureDefinition/bare-role"
    bare["differential"]["element"] = [e for e in bare["differential"]["element"] if not e["id"].endswith(".url")]
    monkeypatch.setitem(registry._by_url(), bare["url"], bare)
    assert fp.check_conformance(ROLE, bare["url"]) == []
    problems = fp.check_conformance(_role_with(_replace(fp.EXT_PEER_STATUS, valueCode="x")), bare["url"])
    assert [p.expression for p in problems] == ["PractitionerRole.extension[0].valueCode"]
    problems = fp.check_conformance(_role_with(_drop(fp.EXT_CASELOAD_CAP)), bare["url"])
    assert [p.message for p in problems] == ["extension:caseloadCap: at least 1 required, found 0"]


def test_registry_constants_name_our_artifacts() -> None:
    expected = {
        fp.PEER_SUPPORTER_ROLE_PROFILE: ("StructureDefinition", "peer-supporter-role"),
        **{spec[0]: ("StructureDefinition", id_) for id_, spec in EXTENSIONS.items()},
        **{spec[0]: ("CodeSystem", id_) for id_, spec in CODE_SYSTEMS.items()},
        **{spec[1]: ("ValueSet", id_) for id_, spec in CODE_SYSTEMS.items()},
    }
    for url, (kind, id_) in expected.items():
        resource = fp.canonical_resource(url)
        assert (resource["resourceType"], resource["id"]) == (kind, id_)
        assert url == f"{fp.CANONICAL}/{kind}/{id_}"
