"""A quick answer to "would fhir.resources accept this JSON as this model?" that may only say yes when it would.

fhir.resources validates each complex element through a Python round trip (a model per element, a before and an
after validator each), which makes a 3 KB Patient cost about a millisecond. Intake reads only a few values of a
Patient or a MessageHeader, yet must refuse a malformed one with the same 4xx as before. So the check here walks
the JSON along the models' own field table, and answers True only when every rule fhir.resources applies is
known to hold:
- every key is a field's alias (the models forbid others) and no key is a `_field` primitive extension or
  `fhir_comments` (those have validators of their own: not sure, so False);
- a complex element is an object (a list of objects when it repeats, with no null in it) and passes the same
  check with its own model; a resource inside (contained, Bundle.entry.resource) is not walked: False;
- a primitive element is validated by pydantic with the field's own annotation (a TypeAdapter): exactly the
  model's rule for it, regular expressions and date parsing included;
- every required field is present and not null, and no choice element ([x]) is given more than once;
- `resourceType`, where a resource has it, is the model's;
- and, for Peerway's own rule on top (per-01, service/fhir/validation.py), no Period in it has an end: one that
  has is checked the slow way, which compares it with its start.

False only means "not sure": the caller then validates with fhir.resources, which names the element at fault
(service/fhir/validation.py). The answer depends on the JSON alone: nothing is remembered between calls.
tests/unit/fhir/test_acceptance.py checks, over mutations of real resources, that True is never said of JSON
fhir.resources refuses.
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass
from functools import cache
from typing import Any

from fhir.resources.R4B.period import Period
from fhir_core.fhirabstractmodel import FHIRAbstractModel
from fhir_core.types import FhirBase, FhirElementOrResourceBase
from pydantic import TypeAdapter

MAX_DEPTH = 64  # as the shape check's (service/fhir/shape.py): deeper is refused before any model sees it


@dataclass(frozen=True)
class _Field:
    repeats: bool
    model: type[FHIRAbstractModel] | None  # a complex element's model; None for a primitive
    primitive: TypeAdapter[Any] | None  # a primitive element's own annotation, as the model validates it
    resource: bool  # a resource inside the element (contained, entry.resource): never walked


@dataclass(frozen=True)
class _Plan:
    resource_type: str | None  # what `resourceType` must say (None: the model takes no resourceType key)
    fields: dict[str, _Field]  # by alias
    required: frozenset[str]  # aliases
    choices: tuple[tuple[str, ...], ...]  # aliases of each choice element's types
    required_choices: tuple[tuple[str, ...], ...]  # those of them that must be given


def surely_valid(model: type[FHIRAbstractModel], data: object) -> bool:
    """True only when `model.model_validate(data)` would succeed and no Period in it has an end (so that
    service/fhir/validation.validated would pass it); False when not sure: validate it then."""
    try:
        return _accepts(model, data, 0)
    except Exception:  # a refusal of any kind (fhir_core raises AttributeError for some) is "not sure"
        return False


def _accepts(model: type[FHIRAbstractModel], data: object, depth: int) -> bool:
    if not isinstance(data, dict) or depth > MAX_DEPTH:
        return False
    plan = _plan(model)
    for key, value in data.items():
        if key == "resourceType":
            if plan.resource_type is None or value != plan.resource_type:
                return False
            continue
        field = plan.fields.get(key)
        if field is None or field.resource or value is None:
            return False
        if field.model is not None:
            items = value if field.repeats else [value]
            if not isinstance(items, list) or not all(_accepts(field.model, item, depth + 1) for item in items):
                return False
            if field.model is Period and any("end" in item for item in items):
                return False
        elif field.primitive is not None:
            field.primitive.validate_python(value)  # raises when the model would refuse it
        else:
            return False
    if not plan.required.issubset(data):
        return False
    if any(sum(1 for alias in choice if alias in data) > 1 for choice in plan.choices):
        return False
    return all(any(alias in data for alias in choice) for choice in plan.required_choices)


@cache
def _plan(model: type[FHIRAbstractModel]) -> _Plan:
    """The model's field table as this check reads it (built once per model class)."""
    fields: dict[str, _Field] = {}
    required: set[str] = set()
    blank = model.model_construct()
    by_name: dict[str, str] = {}
    for name, info in model.model_fields.items():
        alias = info.alias or name
        by_name[name] = alias
        if alias.startswith("_") or alias == "fhir_comments":
            continue  # primitive extensions and comments: left to fhir.resources (not sure)
        fields[alias] = _field(info.annotation, info.metadata)
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        if info.is_required() or extra.get("element_required") is True:
            required.add(alias)
    required |= {by_name[name] for name, _ext in blank.get_required_fields()}
    groups = list(blank.get_one_of_many_fields().values())
    choices = tuple(tuple(by_name[name] for name in names) for names in groups)
    required_choices = tuple(
        tuple(by_name[name] for name in names)
        for names in groups
        if isinstance(first := model.model_fields[names[0]].json_schema_extra, dict)
        and first.get("one_of_many_required") is True
    )
    resource_type = model.get_resource_type() if model.has_resource_base() else None
    return _Plan(resource_type, fields, frozenset(required), choices, required_choices)


def _field(annotation: Any, metadata: list[Any]) -> _Field:
    inner, repeats = _unwrapped(annotation)
    if isinstance(inner, type) and issubclass(inner, FhirElementOrResourceBase):
        return _Field(repeats, None, None, resource=True)
    if isinstance(inner, type) and issubclass(inner, FhirBase):
        return _Field(repeats, inner.get_model_klass(), None, resource=False)
    adapted: Any = typing.Annotated[(annotation, *metadata)] if metadata else annotation
    return _Field(repeats, None, TypeAdapter(adapted), resource=False)


def _unwrapped(annotation: Any) -> tuple[Any, bool]:
    """The element's type without Optional, and whether it repeats (List[...])."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        annotation = args[0]
    if typing.get_origin(annotation) is list:
        return typing.get_args(annotation)[0], True
    return annotation, False
