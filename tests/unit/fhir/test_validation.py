"""service/fhir/validation.py as intake uses it: the resourceType check from the body's bytes answers as the walk
through every element does, a Period ending before it starts is refused wherever it is, and a message parsed
again is read as the first time (nothing is remembered between messages)."""

from __future__ import annotations

import copy
import json
from datetime import date
from typing import Any

import pytest
from fhir.resources.R4B.appointment import Appointment
from fhir.resources.R4B.encounter import Encounter
from hypothesis import given
from hypothesis import strategies as st

from service.errors import BadRequest, PeerwayError
from service.fhir.parse import parse_notification
from service.fhir.validation import _ends_before_start, check_periods, check_resource_types, fhirpath, validated
from tests.conftest import fixture_json

BUNDLE = "davinci/davinci-alerts-discharge-notification-message-bundle-01.json"


def resources() -> list[dict[str, Any]]:
    return [entry["resource"] for entry in fixture_json(BUNDLE)["entry"][:3]]


def outcome(check: Any) -> tuple[type[PeerwayError], str, str | None] | str:
    try:
        check()
    except PeerwayError as error:
        return type(error), str(error), error.expression
    return "passed"


@pytest.mark.parametrize("name", ["extension", "communication", "meta"])
def test_a_bad_patient_element_is_refused_naming_it_after_a_good_message(name: str) -> None:
    bundle = fixture_json(BUNDLE)
    parse_notification(copy.deepcopy(bundle))  # the same values, valid, read first
    patient = bundle["entry"][2]["resource"]
    assert patient["resourceType"] == "Patient"
    patient[name] = [*patient[name], {"url": 5}] if isinstance(patient[name], list) else {"lastUpdated": "x"}
    with pytest.raises(PeerwayError) as refused:
        parse_notification(bundle)
    assert str(refused.value.expression).startswith(f"Bundle.entry[2].resource.{name}")
    assert refused.value.status in (400, 422)


def test_a_message_parsed_again_keeps_every_element_as_sent() -> None:
    first = parse_notification(fixture_json(BUNDLE))
    again = parse_notification(fixture_json(BUNDLE))
    assert again == first
    kept = json.loads(again.patient.resource_json)  # type: ignore[union-attr]
    assert kept["extension"] == resources()[2]["extension"]


# The check that every resource names its resourceType, given the body's bytes, answers as the walk through
# every element does.

_keys = st.sampled_from(["resource", "contained", "resourceType", "id", "x", "resourc\u00e9"])
_leaf = st.none() | st.sampled_from(["resource", "contained", "Patient", "", 'say "resource"']) | st.integers()
_value = st.recursive(
    _leaf,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_keys, inner, max_size=3),
    max_leaves=12,
)
_entry = st.dictionaries(st.sampled_from(["resource", "fullUrl", "search"]), _value, max_size=3) | _leaf


@given(
    entries=st.lists(_entry, max_size=4),
    ascii_only=st.booleans(),
    escaped=st.booleans(),
    other=st.dictionaries(_keys, _value, max_size=2),
)
def test_resource_types_checked_from_the_bytes_as_by_the_walk(
    entries: list[Any], ascii_only: bool, escaped: bool, other: dict[str, Any]
) -> None:
    data = {"resourceType": "Bundle", **other, "entry": entries}
    body = json.dumps(data, ensure_ascii=ascii_only).encode()
    if escaped:  # the same document with its keys "resource" written with an escape
        body = body.replace(b'"resource":', b'"\\u0072esource":')
    assert json.loads(body) == data
    assert outcome(lambda: check_resource_types(data, "Bundle", body)) == outcome(
        lambda: check_resource_types(data, "Bundle")
    )


def test_an_entry_without_its_resource_type_is_named_from_the_bytes_too() -> None:
    bundle = fixture_json(BUNDLE)
    del bundle["entry"][4]["resource"]["resourceType"]
    with pytest.raises(PeerwayError) as refused:
        parse_notification(bundle, body=json.dumps(bundle).encode())
    assert refused.value.expression == "Bundle.entry[4].resource.resourceType"


@pytest.mark.parametrize(
    ("entry", "element", "period"),
    [
        (2, "name", {"start": "2020-02-01", "end": "2020-01-01"}),
        (2, "extension", {"start": "2020-02-01", "end": "2020-01-01"}),
        (1, "period", {"start": "2018-10-23T22:22:15-07:00", "end": "2018-10-21T21:22:15-07:00"}),
    ],
)
def test_a_period_ending_before_it_starts_is_refused_in_the_patient_and_encounter(
    entry: int, element: str, period: dict[str, str]
) -> None:
    bundle = fixture_json(BUNDLE)
    parse_notification(copy.deepcopy(bundle))  # the valid message first
    resource = bundle["entry"][entry]["resource"]
    if element == "name":
        resource["name"][0]["period"] = period
    elif element == "extension":
        resource["extension"].append({"url": "http://example.org/stay", "valuePeriod": period})
    else:
        resource["period"] = period
    with pytest.raises(PeerwayError) as refused:
        parse_notification(bundle, body=json.dumps(bundle).encode())
    assert "per-01" in str(refused.value)
    assert str(refused.value.expression).startswith(f"Bundle.entry[{entry}].resource.{element}")


def test_of_several_entries_without_a_resource_type_the_bytes_name_the_one_the_walk_names() -> None:
    bundle = fixture_json(BUNDLE)
    for at in (3, 5):
        del bundle["entry"][at]["resource"]["resourceType"]
    body = json.dumps(bundle).encode()
    assert outcome(lambda: check_resource_types(bundle, "Bundle", body)) == outcome(
        lambda: check_resource_types(bundle, "Bundle")
    )
    bundle["entry"].insert(0, "not an entry")  # an entry that is no object is the model's to refuse, not a 500
    body = json.dumps(bundle).encode()
    assert outcome(lambda: check_resource_types(bundle, "Bundle", body)) == outcome(
        lambda: check_resource_types(bundle, "Bundle")
    )


def test_only_a_period_is_held_to_per_01_though_other_elements_say_start_and_end() -> None:
    """An Appointment's own start and end are instants, not a Period: per-01 is not theirs to break (the quick
    look at the JSON finds them; the model says they are no Period)."""
    appointment = {
        "resourceType": "Appointment",
        "status": "booked",
        "participant": [{"actor": {"reference": "Patient/p"}, "status": "accepted"}],
        "start": "2026-02-01T10:00:00Z",
        "end": "2026-02-01T09:00:00Z",
    }
    assert validated(Appointment, appointment, "Appointment").start is not None
    with pytest.raises(PeerwayError) as refused:
        validated(
            Appointment,
            {**appointment, "requestedPeriod": [{"start": "2026-02-02", "end": "2026-02-01"}]},
            "Appointment",
        )
    assert refused.value.expression == "Appointment.requestedPeriod[0]"


FHIR_DATES = st.one_of(
    st.integers(min_value=0, max_value=4_000_000_000),  # a number: fhir.resources reads Unix seconds
    st.dates(min_value=date(1990, 1, 1), max_value=date(2030, 12, 31)).map(lambda d: d.isoformat()),
    st.dates(min_value=date(1990, 1, 1), max_value=date(2030, 12, 31)).map(lambda d: d.isoformat()[:7]),
    st.builds(
        lambda d, h, z: f"{d.isoformat()}T{h:02d}:30:00{z}",
        st.dates(min_value=date(1990, 1, 1), max_value=date(2030, 12, 31)),
        st.integers(0, 23),
        st.sampled_from(["Z", "+05:30", "-07:00", "+14:00"]),
    ),
)


@given(start=FHIR_DATES, end=FHIR_DATES, where=st.sampled_from(["period", "extension"]))
def test_the_quick_look_at_the_json_misses_no_period_the_model_walk_refuses(
    start: str | int, end: str | int, where: str
) -> None:
    encounter: dict[str, Any] = {"resourceType": "Encounter", "status": "finished", "class": {"code": "IMP"}}
    period = {"start": start, "end": end}
    if where == "period":
        encounter["period"] = period
    else:
        encounter["extension"] = [{"url": "http://example.org/stay", "valuePeriod": period}]
    model = Encounter.model_validate(encounter)
    try:
        check_periods(model, "Encounter")
    except PeerwayError:
        assert _ends_before_start(encounter)
    else:  # (a number sends the look on to the model walk, which then finds nothing)
        assert not _ends_before_start(encounter) or not isinstance(start, str) or not isinstance(end, str)


# FHIR JSON's primitive types (https://hl7.org/fhir/R4/json.html#primitive): whatever element of a real message is
# given in another JSON type, the whole validation refuses it naming that very element, whether or not the
# quick walk (service/fhir/acceptance.py) would have made the model.
_WRONG_TYPES: dict[type, list[object]] = {
    str: [20001015, 1.5, True],
    bool: ["true", 1],
    int: ["2", True],
    float: ["2.5"],
}


def _leaves(node: Any, loc: tuple[int | str, ...] = ()) -> list[tuple[tuple[int | str, ...], Any]]:
    if isinstance(node, dict):
        return [leaf for key, value in node.items() if key != "resourceType" for leaf in _leaves(value, (*loc, key))]
    if isinstance(node, list):
        return [leaf for at, value in enumerate(node) for leaf in _leaves(value, (*loc, at))]
    return [(loc, node)]


_PRIMITIVES = [(at, loc) for at, resource in enumerate(resources()) for loc, _ in _leaves(resource)]


@given(st.sampled_from(_PRIMITIVES), st.integers(min_value=0, max_value=2), st.booleans())
def test_a_primitive_in_another_json_type_is_refused_naming_it(
    place: tuple[int, tuple[int | str, ...]], pick: int, with_extension: bool
) -> None:
    at, loc = place
    resource = copy.deepcopy(resources()[at])
    node: Any = resource
    for step in loc[:-1]:
        node = node[step]
    wrong = _WRONG_TYPES[type(node[loc[-1]])]
    node[loc[-1]] = wrong[pick % len(wrong)]
    if with_extension and isinstance(loc[-1], str):  # the quick walk is never sure of a `_element`: the slow path
        node["_" + loc[-1]] = {"id": "x"}
    root = resource["resourceType"]
    model = {"Encounter": Encounter}.get(root) or _model_of(root)
    refusal = outcome(lambda: validated(model, resource, root))
    expression = fhirpath(root, loc)
    assert refusal == (BadRequest, refusal[1], expression), refusal
    assert "FHIR JSON writes it as" in refusal[1]


def _model_of(name: str) -> Any:
    from fhir.resources.R4B import get_fhir_model_class

    return get_fhir_model_class(name)


def test_every_primitive_of_the_real_message_keeps_its_json_type() -> None:
    for resource in resources():
        validated(_model_of(resource["resourceType"]), resource, resource["resourceType"])


def test_what_an_ehr_answered_is_held_only_to_the_json_types_that_would_be_misread() -> None:
    """An EHR's answer with "2" for an integer or "true" for a boolean is taken as fhir.resources takes it (an
    id-only event's stay, a Patient, a background item is not lost for it); a number for a date or dateTime
    is refused there too, since it would be read as seconds since 1970."""
    patient, encounter = resources()[2], resources()[1]
    slips = {k: v for k, v in copy.deepcopy(patient).items() if not k.startswith("multipleBirth")}
    slips |= {"active": "true", "multipleBirthInteger": "2"}
    assert validated(_model_of("Patient"), slips, "Patient", from_ehr=True).active is True
    refusal = outcome(lambda: validated(_model_of("Patient"), slips, "Patient"))
    assert refusal[:1] == (BadRequest,)
    assert refusal[2] in ("Patient.active", "Patient.multipleBirthInteger")

    dated = copy.deepcopy(encounter)
    dated["period"]["start"] = 1603400000
    for from_ehr in (True, False):
        refused = outcome(lambda from_ehr=from_ehr: validated(Encounter, dated, "Encounter", from_ehr=from_ehr))
        assert refused[:1] == (BadRequest,)
        assert refused[2] == "Encounter.period.start"


@pytest.mark.parametrize(
    ("extended", "expression"),
    [
        ({"_birthDate": {"extension": [{"url": "http://x", "valueDate": 946684800}]}}, "birthDate.extension[0]"),
        (
            {
                "name": [
                    {"given": ["A", None], "_given": [None, {"extension": [{"url": "http://x", "valueInteger": "5"}]}]}
                ]
            },
            "name[0].given[1].extension[0]",
        ),
    ],
)
def test_a_primitive_extension_is_held_to_fhir_json_types_too(extended: dict[str, Any], expression: str) -> None:
    patient = {"resourceType": "Patient", **extended}
    refusal = outcome(lambda: validated(_model_of("Patient"), patient, "Patient"))
    assert refusal[:1] == (BadRequest,)
    assert str(refusal[2]).startswith(f"Patient.{expression}.value")


@pytest.mark.parametrize(
    ("name", "expression"),
    [
        ({"given": ["Ann", "B"], "_given": [{"id": "x"}]}, "name[0].given"),  # fewer _elements than values
        ({"given": ["Ann"], "_given": [None, {"id": "x"}]}, "name[0].given"),  # more
        ({"_given": [None, {"id": "x"}], "given": ["Ann"]}, "name[0].given"),  # either order
        ({"given": ["Ann", None]}, "name[0].given[1]"),  # a null lining up with nothing
        ({"given": ["Ann", None], "_given": [None, None]}, "name[0].given[1]"),
        ({"_given": [None]}, "name[0].given[0]"),
    ],
)
def test_a_repeating_primitive_whose_elements_do_not_line_up_is_refused_naming_it(
    name: dict[str, Any], expression: str
) -> None:
    """https://hl7.org/fhir/R4/json.html#primitive: a repeating primitive's values and its `_element`s are two
    arrays of one length, with null in one only where the other has an item; fhir.resources takes any."""
    refusal = outcome(lambda: validated(_model_of("Patient"), {"resourceType": "Patient", "name": [name]}, "Patient"))
    assert refusal[:1] == (BadRequest,)
    assert refusal[2] == f"Patient.{expression}"
    assert "line up" in str(refusal[1])


@pytest.mark.parametrize(
    "name",
    [
        {"given": ["Ann", None], "_given": [None, {"id": "x"}]},
        {"_given": [{"id": "x"}, None], "given": [None, "B"]},
        {"given": ["Ann", "B"], "_given": [{"id": "x"}, {"id": "y"}]},
        {"_given": [{"id": "x"}]},  # extensions with no values at all
        {"given": ["Ann", "B"]},
    ],
)
def test_elements_that_line_up_are_taken(name: dict[str, Any]) -> None:
    patient = validated(_model_of("Patient"), {"resourceType": "Patient", "name": [name]}, "Patient")
    assert patient.name is not None


def test_what_an_ehr_answered_is_not_held_to_lining_up() -> None:
    """As with JSON types that cannot be misread: a Patient from the EHR is not lost over it."""
    patient = {"resourceType": "Patient", "name": [{"given": ["Ann", "B"], "_given": [{"id": "x"}]}]}
    assert validated(_model_of("Patient"), patient, "Patient", from_ehr=True).name is not None
