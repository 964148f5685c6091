"""The model fhir.resources would make of some JSON, made quicker, or None when not sure it would make one.

fhir.resources validates each complex element through a Python round trip (a model per element, a before and an
after validator each), which makes a 3 KB Patient cost about a millisecond. Here the JSON is walked along the
models' own field table, and a model is made (model_construct, element by element) only when every rule
fhir.resources applies is known to hold:
- every key is a field's alias (the models forbid others) and no key is a `_field` primitive extension or
  `fhir_comments` (those have validators of their own: not sure);
- a complex element is an object (a list of objects when it repeats, with no null in it) and passes the same
  check with its own model; a resource inside (contained, Bundle.entry.resource) is not walked: not sure;
- a primitive element's value has its FHIR JSON type (a JSON string, boolean or number: see json_type_error)
  and is validated by pydantic with the field's own annotation (a TypeAdapter): the model's very rule for it,
  regular expressions and date parsing included, giving the same typed value;
- every required field is present and not null, and no choice element ([x]) is given more than once;
- `resourceType`, where a resource has it, is the model's.

None only means "not sure": the caller then checks the JSON types (json_type_error) and validates with
fhir.resources, which names the element at fault (service/fhir/validation.py).
The answer depends on the JSON alone: nothing is remembered between calls.
tests/unit/fhir/test_acceptance.py checks, on real resources and many thousands of damaged copies of them, that
a model is made only of JSON fhir.resources accepts, and that it equals the one fhir.resources makes.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any, TypeVar

from fhir_core.fhirabstractmodel import FHIRAbstractModel
from fhir_core.types import FhirBase, FhirElementOrResourceBase
from pydantic import TypeAdapter

M = TypeVar("M", bound=FHIRAbstractModel)
MAX_DEPTH = 64  # as the shape check's (service/fhir/shape.py): deeper is refused before any model sees it


@dataclass(frozen=True)
class _Field:
    name: str  # the model's own name for the field (model_construct takes names, not aliases)
    repeats: bool
    model: type[FHIRAbstractModel] | None  # a complex element's model; None for a primitive
    primitive: Callable[[Any], Any] | None  # validates a primitive element's value as the model does (its type)
    resource: bool  # a resource inside the element (contained, entry.resource): never walked
    # a primitive's FHIR JSON type: "string" ("date" for date, dateTime, instant and time), "boolean", "integer",
    # "decimal" or "integer64"
    kind: str | None = None


@dataclass(frozen=True)
class _Plan:
    resource_type: str | None  # what `resourceType` must say (None: the model takes no resourceType key)
    fields: dict[str, _Field]  # by alias
    required: frozenset[str]  # aliases
    choices: tuple[tuple[str, ...], ...]  # aliases of each choice element's types
    required_choices: tuple[tuple[str, ...], ...]  # those of them that must be given
    defaults: dict[str, Any] | None  # every field's value when not given (None: not made here, not sure)


def quick_model(model: type[M], data: object) -> M | None:
    """`model.model_validate(data)` when it is sure to succeed, made without fhir.resources' validators;
    None when not sure (validate then)."""
    try:
        return _made(model, data, 0)
    except Exception:  # a refusal of any kind (fhir_core raises AttributeError for some) is "not sure"
        return None


def _made(model: type[M], data: object, depth: int) -> M | None:
    if not isinstance(data, dict) or depth > MAX_DEPTH:
        return None
    plan = _plan(model)
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key == "resourceType":
            if plan.resource_type is None or value != plan.resource_type:
                return None
            continue
        field = plan.fields.get(key)
        if field is None or field.resource or value is None:
            return None
        if field.model is None:
            assert field.primitive is not None
            if not _of_kind(field, value):
                return None
            values[field.name] = field.primitive(value)  # raises when the model would refuse it
        elif not field.repeats:
            if (made := _made(field.model, value, depth + 1)) is None:
                return None
            values[field.name] = made
        elif isinstance(value, list):
            items = [_made(field.model, item, depth + 1) for item in value]
            if any(item is None for item in items):
                return None
            values[field.name] = items
        else:
            return None
    if not plan.required.issubset(data):
        return None
    if any(sum(1 for alias in choice if alias in data) > 1 for choice in plan.choices):
        return None
    if not all(any(alias in data for alias in choice) for choice in plan.required_choices):
        return None
    if plan.defaults is None:
        return None
    # What model_construct does, without looking up every field's default again (a FHIR element has dozens).
    made = model.__new__(model)
    object.__setattr__(made, "__dict__", plan.defaults | values)
    object.__setattr__(made, "__pydantic_fields_set__", set(values))
    object.__setattr__(made, "__pydantic_extra__", None)
    object.__setattr__(made, "__pydantic_private__", None)
    return made


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
        fields[alias] = _field(name, info.annotation, info.metadata)
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
    return _Plan(resource_type, fields, frozenset(required), choices, required_choices, _defaults(model))


# The validators every FHIR model has, whose rules the walk applies itself (null list items; required elements,
# choice elements). A model with any other validator is never made here.
_KNOWN_VALIDATORS = frozenset({"reject_null_complex_elements", "validate_after_model_construction"})
_REQUIRED = object()  # a required field's place in the defaults: the walk has checked that the JSON gives it


def _defaults(model: type[FHIRAbstractModel]) -> dict[str, Any] | None:
    """Every field's value when not given, in the model's order (as model_validate orders them), when the walk
    knows every rule the model applies and nothing else is set up on a new model; None otherwise."""
    decorators = model.__pydantic_decorators__
    plain = (
        set(decorators.model_validators) <= _KNOWN_VALIDATORS
        and not decorators.field_validators
        and not decorators.validators
        and not decorators.root_validators
        and not decorators.computed_fields
        and model.__init__ is FHIRAbstractModel.__init__
        and not any(
            "__get_pydantic_core_schema__" in vars(cls)
            for cls in model.__mro__[: model.__mro__.index(FHIRAbstractModel)]
        )
        and model.__pydantic_post_init__ is None
        and not model.__pydantic_root_model__
        and not model.__private_attributes__
        and model.model_config.get("extra") != "allow"
    )
    defaults = {name: _REQUIRED if info.is_required() else info.default for name, info in model.model_fields.items()}
    if not plain or any(value is not None and value is not _REQUIRED for value in defaults.values()):
        return None
    return defaults


def _below(model: type, base: type) -> tuple[type, ...]:
    """The classes from `model` up to (not including) `base` in its method resolution order."""
    return model.__mro__[: model.__mro__.index(base)]


def _field(name: str, annotation: Any, metadata: list[Any]) -> _Field:
    inner, repeats = _unwrapped(annotation)
    if isinstance(inner, type) and issubclass(inner, FhirElementOrResourceBase):
        return _Field(name, repeats, None, None, resource=True)
    if isinstance(inner, type) and issubclass(inner, FhirBase):
        return _Field(name, repeats, inner.get_model_klass(), None, resource=False)
    adapted: Any = typing.Annotated[(annotation, *metadata)] if metadata else annotation
    # The adapter's core validator itself: TypeAdapter.validate_python's own wrapper cost a third of the walk.
    validate = TypeAdapter(adapted).validator.validate_python
    item, _ = _unwrapped(inner) if repeats else (inner, False)  # a list's items are Optional[...] themselves
    return _Field(name, repeats, None, validate, resource=False, kind=_json_kind(item))


# FHIR's JSON representation gives each primitive type one JSON type: boolean a JSON boolean; integer,
# positiveInt, unsignedInt and decimal a JSON number; every other (string, code, date, dateTime, instant, uri,
# base64Binary, integer64) a JSON string. integer64 (R5's SubscriptionStatus.eventsSinceSubscriptionStart) is
# also taken as a JSON number: some senders write it so, and an event is not refused for it. fhir.resources
# (pydantic in lax mode) also takes "true" for a boolean, "5" for an integer and a number for a date (read as
# seconds since 1970), which FHIR JSON never means.
_INTEGERS = frozenset({"Integer", "PositiveInt", "UnsignedInt"})
_DATES = frozenset({"Date", "DateTime", "Instant", "Time"})  # JSON strings that fhir.resources reads from numbers


def _json_kind(inner: Any) -> str | None:
    """The FHIR JSON type of a primitive element whose (unwrapped) annotation is `inner`; None when unknown."""
    base: Any = inner
    markers: tuple[str, ...] = ()
    if typing.get_origin(inner) is typing.Annotated:
        base, *rest = typing.get_args(inner)
        markers = tuple(type(m).__name__ for m in rest)
    if markers:  # the FHIR type's own marker decides (integer64's Python type is int, its JSON a string)
        if "Boolean" in markers:
            return "boolean"
        if any(m in _INTEGERS for m in markers):
            return "integer"
        if "Decimal" in markers:
            return "decimal"
        if "Integer64" in markers:
            return "integer64"
        return "date" if any(m in _DATES for m in markers) else "string"
    if base is bool:
        return "boolean"
    if base is int:
        return "integer"
    if getattr(base, "__name__", "") in ("Decimal", "float"):
        return "decimal"
    return "string" if base is str else None


def _is_kind(kind: str | None, value: Any) -> bool:
    if kind in ("string", "date"):
        return isinstance(value, str)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "decimal":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "integer64":  # a JSON string in FHIR (R4B, R5); a JSON number is taken too, as senders write it
        return isinstance(value, str | int) and not isinstance(value, bool)
    return True


def _of_kind(field: _Field, value: Any) -> bool:
    """Whether a primitive element's JSON value (each of them, when it repeats) has the element's JSON type; a
    null in a repeating primitive's list (there only to line up with an `_element`) is not sure: json_type_error
    checks that the two line up."""
    if field.repeats and isinstance(value, list):
        return all(item is not None and _is_kind(field.kind, item) for item in value)
    return _is_kind(field.kind, value)


def json_type_error(
    model: type[FHIRAbstractModel], data: object, kinds: frozenset[str] | None = None
) -> tuple[tuple[int | str, ...], str, Any] | None:
    """A primitive element in `data` (read as `model`) whose JSON value is not of its FHIR JSON type, as (its
    location, the type it needs, the value), or None; `kinds`: only elements of those kinds are checked. With
    every kind checked, a repeating primitive whose values and `_element`s do not line up is found too, as (its
    location, ALIGNED, None).
    Resources inside (contained, Bundle.entry.resource) are read as the model their resourceType names, of
    `model`'s FHIR release; elements the models do not know, and values of the wrong shape, are left to the
    models' own validation."""
    pending: list[tuple[tuple[int | str, ...], type[FHIRAbstractModel], Any, int]] = [((), model, data, 0)]
    while pending:
        loc, current, node, depth = pending.pop()
        if not isinstance(node, dict) or depth > MAX_DEPTH:
            continue
        fields = _plan(current).fields
        for key, value in node.items():
            field = fields.get(key) if isinstance(key, str) else None
            name = key
            primitive = fields.get(key[1:]) if isinstance(key, str) and key.startswith("_") else None
            if field is None and primitive is not None and primitive.model is None and not primitive.resource:
                field = _element_field(current, primitive.repeats)  # a primitive's id and extensions
                name = key[1:]  # FHIRPath names them as the primitive's own: birthDate.extension[0]
            if field is None or value is None:
                continue
            primitive_items = name != key or (field.model is None and not field.resource)  # values, _elements
            if (
                kinds is None
                and field.repeats
                and primitive_items
                and (misaligned := _misaligned(node, key, name, value)) is not None
            ):
                return (*loc, name, *misaligned), ALIGNED, None
            items = list(enumerate(value)) if field.repeats and isinstance(value, list) else [(None, value)]
            for at, item in items:
                where = (*loc, name) if at is None else (*loc, name, at)
                if field.model is None and not field.resource:
                    if item is not None and (kinds is None or field.kind in kinds) and not _is_kind(field.kind, item):
                        return where, field.kind or "?", item
                elif field.resource:
                    inner = _resource_model(current, item)
                    if inner is not None:
                        pending.append((where, inner, item, depth + 1))
                elif field.model is not None:
                    pending.append((where, field.model, item, depth + 1))
    return None


ALIGNED = "aligned"  # json_type_error's kind for a repeating primitive whose values and `_element`s do not line up


def _misaligned(node: dict[Any, Any], key: str, name: str, value: Any) -> tuple[int, ...] | None:
    """Where a repeating primitive's values and its `_name` items fail to line up as FHIR JSON lines them (both
    arrays of one length, a null in one only where the other has an item): () for the element as a whole, (i,)
    for one item; None when they line up (or either is no array: the models refuse that)."""
    values = node.get(name)
    elements = node.get("_" + name)
    if key != name and values is not None:
        return None  # both present: checked once, at the values
    if not isinstance(values, list | None) or not isinstance(elements, list | None):
        return None
    if values is not None and elements is not None and len(values) != len(elements):
        return ()
    for at in range(len(values if values is not None else elements or ())):
        if (values is None or values[at] is None) and (elements is None or elements[at] is None):
            return (at,)
    return None


def _element_field(beside: type[FHIRAbstractModel], repeats: bool) -> _Field:
    """The `_element` beside a primitive element of `beside`, read as an Element of the same FHIR release."""
    if beside.__module__.startswith("fhir.resources.R4B."):
        from fhir.resources.R4B.element import Element
    else:
        from fhir.resources.element import Element  # type: ignore[assignment]
    return _Field("_", repeats, Element, None, resource=False)


def _resource_model(beside: type[FHIRAbstractModel], resource: Any) -> type[FHIRAbstractModel] | None:
    """The model of a resource inside one of `beside`'s elements, of the same FHIR release; None if unknown."""
    name = resource.get("resourceType") if isinstance(resource, dict) else None
    if not isinstance(name, str) or not name.isalpha():
        return None
    try:
        if beside.__module__.startswith("fhir.resources.R4B."):
            from fhir.resources.R4B import get_fhir_model_class as r4b

            return r4b(name)
        from fhir.resources import get_fhir_model_class as r5

        return r5(name)
    except (KeyError, ValueError, ImportError, AttributeError):
        return None


def _unwrapped(annotation: Any) -> tuple[Any, bool]:
    """The element's type without Optional, and whether it repeats (List[...])."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        annotation = args[0]
    if typing.get_origin(annotation) is list:
        return typing.get_args(annotation)[0], True
    return annotation, False
