"""Turn fhir.resources / pydantic validation failures into errors naming the FHIR element, and check what the
models leave unchecked: that every contained or Bundle-entry resource says its resourceType (a model reads one
without it as a bare Resource), and that no Period ends before it starts (invariant per-01).

`validated_known` validates once what hospitals send again and again: the elements of a resource that repeat
from message to message (a Patient's race and ethnicity extensions, an Encounter's type and participants) are
remembered by the SHA-256 digest of their JSON once they have passed, and left out of the next validation of
the same element. A refusal is always the whole resource's own, as `validated` gives it.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from fhir.resources.period import Period as R5Period
from fhir.resources.R4B.period import Period as R4BPeriod
from pydantic import BaseModel, ValidationError

from service.errors import BadRequest, InvalidResource, PeerwayError
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
    model: type[M], data: Mapping[str, Any], root: str, *, types_checked: bool = False, periods: bool = True
) -> M:
    """model.model_validate(data), every failure a 4xx naming the element where it can be named.

    fhir.resources (fhir_core) raises plain TypeError/ValueError for some malformed input instead of a
    ValidationError; those are the sender's fault too, so they become 400s rather than 500s.
    """
    if not types_checked:  # the caller checked the whole document already (check_resource_types)
        check_resource_types(data, root)
    try:
        parsed = model.model_validate(data)
    except ValidationError as exc:
        raise invalid_from(exc, root) from None
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        raise BadRequest(f"{root} could not be read as FHIR R4 ({type(exc).__name__})", root) from None
    if periods:  # False: the caller knows no element "end" is in the data, so no Period can end before it starts
        check_periods(parsed, root)
    return parsed


# Digests of element values (resource type, element name and JSON) that passed validation in this process:
# digests only, no PHI kept. Bounded; the least recently seen go first. What passed once passes again (the
# checks do not depend on anything else), so nothing needs invalidating while the process runs.
KNOWN_VALID_LIMIT = 8192
_known_valid: OrderedDict[bytes, None] = OrderedDict()


def validated_known(
    model: type[M],
    data: Mapping[str, Any],
    root: str,
    *,
    repeated: frozenset[str],
    types_checked: bool = False,
    periods: bool = True,
) -> M:
    """validated(model, data, root) for a resource whose `repeated` elements (neither required nor read by the
    caller from the model) often come again unchanged: each of their values (each item of a list) seen valid
    before is left out of the validation, so the model answered lacks them. The answer for bad input is
    validated's, element for element: whenever the shortened resource fails, the whole one is validated."""
    rest, seen, fresh = _split(model.__name__, data, repeated)
    if not seen:
        parsed = validated(model, data, root, types_checked=types_checked, periods=periods)
    else:
        try:
            parsed = validated(model, rest, root, types_checked=types_checked, periods=periods)
        except PeerwayError:  # its own refusal, naming the element
            parsed = validated(model, data, root, types_checked=True, periods=periods)
    for digest in fresh:
        _known_valid[digest] = None
    while len(_known_valid) > KNOWN_VALID_LIMIT:
        _known_valid.popitem(last=False)
    return parsed


def _split(kind: str, data: Mapping[str, Any], repeated: frozenset[str]) -> tuple[dict[str, Any], bool, list[bytes]]:
    """(the resource without the values of `repeated` elements known valid, whether any was left out, the
    digests of the values not known yet). "parent.child" names an element of each item of a list element."""
    rest = dict(data)
    seen = False
    fresh: list[bytes] = []
    for name in repeated.intersection(data):
        value = data[name]
        many = isinstance(value, list)
        items = value if many else [value]
        if not items:
            continue  # an empty list is the model's to refuse or not
        unknown = []
        for item in items:
            digest = _digest(kind, name, item)
            if digest in _known_valid:
                _known_valid.move_to_end(digest)
                seen = True
            else:
                fresh.append(digest)
                unknown.append(item)
        if not unknown:
            del rest[name]
        elif many:
            rest[name] = unknown
    for path in repeated:  # "identifier.type": the type of each identifier (an item keeps its other elements)
        parent, dot, child = path.partition(".")
        if not dot or not isinstance(rest.get(parent), list):
            continue
        kept: list[Any] = []
        for item in rest[parent]:
            if isinstance(item, dict) and child in item and len(item) > 1:
                digest = _digest(kind, path, item[child])
                if digest in _known_valid:
                    _known_valid.move_to_end(digest)
                    seen = True
                    item = {key: value for key, value in item.items() if key != child}
                else:
                    fresh.append(digest)
            kept.append(item)
        rest[parent] = kept
    return rest, seen, fresh


def _digest(kind: str, name: str, value: Any) -> bytes:
    text = json.dumps([kind, name, value], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).digest()


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


def _bound(value: object, *, end: bool) -> Any:
    """The earliest (start) or latest (end) instant a date or dateTime stands for; None when unknown."""
    if value is None:
        return None
    text = value if isinstance(value, str) else getattr(value, "isoformat", lambda: "")()
    try:
        return optional_instant(text, "", end=end)
    except InvalidResource:
        return None  # a time without a zone (the model took it): not comparable, and not ours to refuse here
