"""service/fhir/acceptance.py may make a model only of JSON that fhir.resources accepts, and only the model
fhir.resources makes of it: otherwise Peerway would keep a resource it used to refuse with a 4xx, or read another
value from it. Checked on every resource of the real notification fixtures and on many thousands of damaged
copies of them (wrong types, nulls, missing required elements, choice elements given twice, unknown keys, bad
dates and ids, objects where lists belong...)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.fhirprimitiveextension import FHIRPrimitiveExtension
from fhir.resources.R4B.patient import Patient
from fhir_core.fhirabstractmodel import FHIRAbstractModel
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import field_validator

from service.fhir.acceptance import quick_model
from tests.conftest import fixture_json
from tests.unit.consent.conftest import BASE

FIXTURES = [
    "davinci/davinci-alerts-admit-notification-message-bundle-01.json",
    "davinci/davinci-alerts-discharge-notification-message-bundle-01.json",
    "davinci/davinci-alerts-transfer-notification-message-bundle-01.json",
    "backport/backport-r4-full_resource_notification_bundle_example.json",
]
# Values a sender might put anywhere by mistake; the pair of a date and a time, a blank string, numbers as text.
ODD_VALUES: list[Any] = [
    None,
    "",
    " ",
    "x",
    "2020-13-45",
    "2020-02-30",
    "2020-01-01T25:00:00Z",
    "1",
    "true",
    0,
    -1,
    1.5,
    10**20,
    True,
    False,
    [],
    [None],
    [{}],
    {},
    {"unknown": 1},
    {"extension": []},
    {"url": 5},
    {"resourceType": "Patient"},
]
KEYS = ["unknown", "_gender", "_status", "fhir_comments", "resourceType", "id", "extension", "valueString",
        "valueBoolean", "class_fhir", "resource_type", "modifierExtension", "contained", "url", "system"]  # fmt: skip


def _model(resource: dict[str, Any]) -> type[FHIRAbstractModel]:
    model: type[FHIRAbstractModel] = get_fhir_model_class(resource["resourceType"])
    return model


def _shell(bundle: dict[str, Any]) -> dict[str, Any]:
    """The Bundle without its entries' resources, as intake validates it."""
    return {**bundle, "entry": [{k: v for k, v in e.items() if k != "resource"} for e in bundle.get("entry", [])]}


def _samples() -> list[tuple[type[FHIRAbstractModel], dict[str, Any]]]:
    found: list[tuple[type[FHIRAbstractModel], dict[str, Any]]] = []
    for name in FIXTURES:
        bundle = fixture_json(name)
        found.append((Bundle, _shell(bundle)))
        found += [(_model(e["resource"]), e["resource"]) for e in bundle["entry"] if "resource" in e]
    return found


SAMPLES = _samples()


def _validated(model: type[FHIRAbstractModel], data: object) -> FHIRAbstractModel | None:
    try:
        return model.model_validate(data)
    except Exception:  # any refusal (ValidationError, TypeError...) is a refusal
        return None


def _same(quick: FHIRAbstractModel, slow: FHIRAbstractModel | None) -> bool:
    """The same model: equal values (element by element, typed), the same elements given, the same JSON, the same
    order of fields (what repr and iterating a model show)."""
    return (
        slow is not None
        and quick == slow
        and quick.model_dump_json() == slow.model_dump_json()
        and _orders(quick) == _orders(slow)
    )


def _orders(model: object) -> list[Any]:
    """Each model's field names in order, nested models' too."""
    if isinstance(model, list):
        return [_orders(item) for item in model]
    if not isinstance(model, FHIRAbstractModel):
        return []
    return [(name, _orders(value)) for name, value in model.__dict__.items()]


def _paths(value: object, path: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    found = [path]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*path, key))
    elif isinstance(value, list):
        for at, item in enumerate(value):
            found += _paths(item, (*path, at))
    return found


def _mutate(data: dict[str, Any], draw: Callable[[st.SearchStrategy[Any]], Any]) -> None:
    paths = [p for p in _paths(data) if p]
    path = draw(st.sampled_from(paths))
    parent: Any = data
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    action = draw(st.sampled_from(["replace", "delete", "wrap", "unwrap", "add-key", "graft", "rename"]))
    if action == "replace":
        parent[last] = copy.deepcopy(draw(st.sampled_from(ODD_VALUES)))
    elif action == "delete":
        del parent[last]
    elif action == "wrap":
        parent[last] = [parent[last]]
    elif action == "unwrap" and isinstance(parent[last], list) and parent[last]:
        parent[last] = parent[last][0]
    elif action == "add-key":
        target = parent[last] if isinstance(parent[last], dict) else parent
        if isinstance(target, dict):
            target[draw(st.sampled_from(KEYS))] = copy.deepcopy(draw(st.sampled_from(ODD_VALUES[:12])))
    elif action == "graft":  # a value from elsewhere in the resource, often of another element's type
        source: Any = data
        for step in draw(st.sampled_from(paths)):
            source = source[step]
        parent[last] = copy.deepcopy(source)
    elif action == "rename" and isinstance(last, str):
        parent[draw(st.sampled_from([last.upper(), last + "x", "_" + last, last.rstrip("e")]))] = parent.pop(last)


@pytest.mark.parametrize(("model", "data"), SAMPLES, ids=[f"{m.__name__}-{n}" for n, (m, _) in enumerate(SAMPLES)])
def test_every_real_resource_is_made_as_fhir_resources_makes_it(
    model: type[FHIRAbstractModel], data: dict[str, Any]
) -> None:
    quick = quick_model(model, data)
    assert quick is not None
    assert _same(quick, _validated(model, data))


def test_the_resources_intake_reads_take_the_quick_way() -> None:
    """Not a speed test: without this the models would still be right, but every message would pay the slow way."""
    for name in FIXTURES[:3]:
        bundle = fixture_json(name)
        assert quick_model(Bundle, _shell(bundle)) is not None
        for entry in bundle["entry"][:3]:  # the MessageHeader, its focus Encounter and the Encounter's Patient
            assert quick_model(_model(entry["resource"]), entry["resource"]) is not None


@settings(
    max_examples=BASE * 25,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.sampled_from(range(len(SAMPLES))), st.integers(min_value=1, max_value=3), st.data())
def test_a_damaged_resource_is_never_said_to_be_valid_when_fhir_resources_refuses_it(
    at: int, changes: int, data: st.DataObject
) -> None:
    model, original = SAMPLES[at]
    damaged = copy.deepcopy(original)
    for _ in range(changes):
        if not _paths(damaged)[1:]:
            break
        _mutate(damaged, data.draw)
    quick = quick_model(model, damaged)
    if quick is not None:
        assert _same(quick, _validated(model, damaged)), damaged


@pytest.mark.parametrize(
    "patient",
    [
        {"resourceType": "Patient", "deceasedBoolean": True, "deceasedDateTime": "2020-01-01"},
        {"resourceType": "Patient", "name": [None]},
        {"resourceType": "Patient", "_gender": {"extension": [{"url": "x", "valueString": "y"}]}},
        {"resourceType": "Patient", "contained": [{"resourceType": "Patient"}]},
        {"resourceType": "Encounter"},
        {"resourceType": "Patient", "link": [{"type": "seealso"}]},  # link.other is required
        {"resourceType": "Patient", "birthDate": "2020-02-30"},
        {"resourceType": "Patient", "id": "not an id"},
        {"resourceType": "Patient", "extension": [{"valueString": "no url"}]},
        {"resourceType": "Patient", "name": {"family": "not a list"}},
    ],
)
def test_what_fhir_resources_refuses_or_checks_itself_is_left_to_it(patient: dict[str, Any]) -> None:
    assert quick_model(Patient, patient) is None


class _PickyPatient(Patient):
    @field_validator("gender")
    @classmethod
    def _no_other(cls, value: str | None) -> str | None:
        if value == "other":
            raise ValueError("not here")
        return value


def test_a_model_with_validators_of_its_own_is_left_to_fhir_resources() -> None:
    """The walk knows the rules every FHIR model has; a model with more (a primitive's extension sibling, a
    subclass with a field validator) is never made by it, even of JSON it would otherwise accept."""
    assert quick_model(FHIRPrimitiveExtension, {}) is None
    assert quick_model(_PickyPatient, {"resourceType": "Patient", "gender": "other"}) is None
    assert quick_model(Patient, {"resourceType": "Patient", "gender": "other"}) is not None
