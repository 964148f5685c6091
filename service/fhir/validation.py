"""Turn fhir.resources / pydantic validation failures into errors naming the FHIR element, and check what the
models leave unchecked: that every contained or Bundle-entry resource says its resourceType (a model reads one
without it as a bare Resource), and that no Period ends before it starts (invariant per-01).

Every resource is validated whole, each time: the answer depends on the body alone, never on what the process
saw before (a digest cache of values "known valid" was tried and removed: it accepted elements in the wrong
shape once their values had been seen, and its answers told a sender what other sites had sent). A FHIR model is
first made by service/fhir/acceptance.py, in about a tenth of the time, when it is sure fhir.resources would make
the same; otherwise fhir.resources validates, and its refusal names the element.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from fhir.resources.period import Period as R5Period
from fhir.resources.R4B.period import Period as R4BPeriod
from fhir_core.fhirabstractmodel import FHIRAbstractModel
from pydantic import BaseModel, ValidationError

from service.errors import BadRequest, InvalidResource
from service.fhir.acceptance import ALIGNED, json_type_error, quick_model
from service.fhir.dates import optional_instant

M = TypeVar("M", bound=BaseModel)
Loc = tuple[int | str, ...]


def fhirpath(root: str, loc: Sequence[int | str]) -> str:
    """('entry', 1, 'resource', 'status') -> 'Bundle.entry[1].resource.status'."""
    path = root
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part in ("__root__",) or part.startswith("function-"):
            continue
        else:
            path += f".{part.removesuffix('__ext').removesuffix('_fhir')}"
    return path


def invalid_from(error: ValidationError, root: str) -> BadRequest:
    first = error.errors()[0]
    loc = [p for p in first.get("loc", ()) if isinstance(p, int | str)]
    expression = fhirpath(root, loc)
    return BadRequest(f"{expression}: {first.get('msg', 'invalid')}", expression=expression)


def validated(
    model: type[M],
    data: Mapping[str, Any],
    root: str,
    *,
    types_checked: bool = False,
    periods: bool = True,
    from_ehr: bool = False,
) -> M:
    """model.model_validate(data), every failure a 4xx naming the element where it can be named.

    `from_ehr`: `data` is what an EHR answered, not a body sent to Peerway. Of FHIR JSON's primitive types only
    dates and times are then held to theirs (a number there would be read as seconds since 1970); "2" for an
    integer or "true" for a boolean is taken as fhir.resources takes it, so a stay, a Patient or a background
    item is not lost over a slip that cannot be misread.

    fhir.resources (fhir_core) raises plain TypeError/ValueError for some malformed input instead of a
    ValidationError; those are the sender's fault too, so they become 400s rather than 500s.
    """
    if not types_checked:  # the caller checked the whole document already (check_resource_types)
        check_resource_types(data, root)
    quick = quick_model(model, data) if issubclass(model, FHIRAbstractModel) else None
    if quick is None and issubclass(model, FHIRAbstractModel):
        check_json_types(model, data, root, kinds=_MISREAD if from_ehr else None)
    try:
        parsed = quick if quick is not None else model.model_validate(data)
    except ValidationError as exc:
        raise invalid_from(exc, root) from None
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        raise BadRequest(f"{root} could not be read as FHIR R4 ({type(exc).__name__})", root) from None
    # periods False: the caller knows no element "end" is in the data, so no Period can end before it starts
    if periods and _ends_before_start(data):
        check_periods(parsed, root)
    return parsed


_JSON_TYPES = {
    "string": "a JSON string",
    "date": "a JSON string",
    "boolean": "a JSON boolean",
    "integer": "a JSON integer",
    "decimal": "a JSON number",
    "integer64": "a JSON string (or number)",
}


_MISREAD = frozenset({"date"})  # what fhir.resources would read wrongly in another JSON type (a number)


def check_json_types(
    model: type[FHIRAbstractModel], data: Mapping[str, Any], root: str, kinds: frozenset[str] | None = None
) -> None:
    """Refuse (400, naming the element) a primitive whose JSON value is not of its FHIR JSON type: a number for a
    date, "true" for a boolean, "5" for an integer. fhir.resources would read those (a number as seconds since
    1970); FHIR JSON never means them so (https://hl7.org/fhir/R4/json.html#primitive)."""
    found = json_type_error(model, data, kinds)
    if found is not None:
        loc, kind, value = found
        expression = fhirpath(root, loc)
        if kind == ALIGNED:
            raise BadRequest(
                f"{expression}: a repeating primitive's values and their _elements (id, extensions) line up item by"
                " item in FHIR JSON: both arrays of one length, null in one only where the other has an item",
                expression,
            )
        needs = _JSON_TYPES.get(kind, "another JSON type")
        raise BadRequest(f"{expression}: FHIR JSON writes it as {needs}, not {_json_name(value)}", expression)


def _json_name(value: object) -> str:
    if isinstance(value, bool):
        return "a JSON boolean"
    if isinstance(value, float):
        return "a JSON number with a fraction or exponent"
    if isinstance(value, int):
        return "a JSON number"
    if isinstance(value, str):
        return "a JSON string"
    return "a JSON array" if isinstance(value, list) else "a JSON object"


def check_resource_types(data: Mapping[str, Any], root: str, body: bytes | None = None) -> None:
    """Every resource inside (a Bundle entry's, a Parameters part's, a contained one) names its resourceType.

    `body`, the UTF-8 JSON `data` was read from, spares the walk through every element when its bytes show that
    the only resources are the Bundle entries' (see _only_entry_resources)."""
    if body is not None and _only_entry_resources(data, body):
        entries = data["entry"]
        for at in reversed(range(len(entries))):  # the order the walk below meets them (last first)
            resource = entries[at].get("resource") if isinstance(entries[at], Mapping) else None
            if isinstance(resource, Mapping) and not (
                isinstance(resource.get("resourceType"), str) and resource["resourceType"]
            ):
                expression = fhirpath(root, ("entry", at, "resource"))
                raise InvalidResource(f"{expression} needs its resourceType", f"{expression}.resourceType")
        return
    pending: list[tuple[Loc, Any]] = [((), data)]
    while pending:
        loc, node = pending.pop()
        if isinstance(node, list):
            pending.extend(((*loc, i), item) for i, item in enumerate(node))
            continue
        if not isinstance(node, Mapping):
            continue
        for key, value in node.items():
            inner: list[tuple[Loc, Any]] = []
            if key == "resource" and isinstance(value, Mapping):
                inner = [((*loc, key), value)]
            elif key == "contained" and isinstance(value, list):
                inner = [((*loc, key, i), item) for i, item in enumerate(value) if isinstance(item, Mapping)]
            for where, resource in inner:
                if not isinstance(resource.get("resourceType"), str) or not resource["resourceType"]:
                    expression = fhirpath(root, where)
                    raise InvalidResource(f"{expression} needs its resourceType", f"{expression}.resourceType")
            if isinstance(value, Mapping | list):
                pending.append(((*loc, str(key)), value))


def _only_entry_resources(data: Mapping[str, Any], body: bytes) -> bool:
    """Whether no key "resource" or "contained" occurs in `data` but each entry's own "resource". Keys spelled
    with letters only can be escaped only as \\uXXXX: without that in a UTF-8 body, every such key is written
    as itself, so the body's count of '"resource"' (keys and any equal string) equals the entries holding a
    resource only when those are all, and '"contained"' is nowhere."""
    entries = data.get("entry")
    if not isinstance(entries, list) or json.detect_encoding(body) not in ("utf-8", "utf-8-sig"):
        return False
    if b"\\u" in body or b'"contained"' in body:
        return False
    holding = sum(1 for entry in entries if isinstance(entry, Mapping) and "resource" in entry)
    return body.count(b'"resource"') == holding


def check_periods(model: BaseModel, root: str) -> None:
    """No Period in the resource ends before it starts (per-01; FHIR ends are inclusive, so '2020-01' may end a
    period that starts on 2020-01-15)."""
    pending: list[tuple[Loc, BaseModel]] = [((), model)]
    while pending:
        loc, node = pending.pop()
        if isinstance(node, R4BPeriod | R5Period):
            start, end = _bound(node.start, end=False), _bound(node.end, end=True)
            if start is not None and end is not None and end < start:
                expression = fhirpath(root, loc)
                raise InvalidResource(f"{expression}: the period ends before it starts (per-01)", expression)
        fields = type(node).model_fields
        # Only the elements the sender gave (a FHIR model has dozens, nearly all unset and None).
        for name in node.model_fields_set:
            value = getattr(node, name, None)
            alias = fields[name].alias or name if name in fields else name
            if isinstance(value, BaseModel):
                pending.append(((*loc, alias), value))
            elif isinstance(value, list):
                pending.extend(((*loc, alias, i), item) for i, item in enumerate(value) if isinstance(item, BaseModel))


def _ends_before_start(data: Mapping[str, Any]) -> bool:
    """Whether any object in the JSON has a "start" and an "end" that ends before it starts: the only way a Period
    can break per-01. A third of the time of walking the model (which check_periods then does, to know whether
    that object is a Period, and where); the model's dates are the JSON's strings, parsed. A start or end that is
    no string (fhir.resources reads a number as Unix seconds) is left to the model walk too."""
    pending: list[Any] = [data]
    while pending:
        node = pending.pop()
        if isinstance(node, Mapping):
            if "end" in node and "start" in node:
                raw_start, raw_end = node["start"], node["end"]
                if not isinstance(raw_start, str | None) or not isinstance(raw_end, str | None):
                    return True  # a number the model reads as a moment (Unix seconds): the model walk decides
                start, end = _bound(raw_start, end=False), _bound(raw_end, end=True)
                if start is not None and end is not None and end < start:
                    return True
            pending.extend(value for value in node.values() if isinstance(value, Mapping | list))
        elif isinstance(node, list):
            pending.extend(item for item in node if isinstance(item, Mapping | list))
    return False


def _bound(value: object, *, end: bool) -> Any:
    """The earliest (start) or latest (end) instant a date or dateTime stands for; None when unknown."""
    if value is None:
        return None
    text = value if isinstance(value, str) else getattr(value, "isoformat", lambda: "")()
    try:
        return optional_instant(text, "", end=end)
    except InvalidResource:
        return None  # a time without a zone (the model took it): not comparable, and not ours to refuse here
