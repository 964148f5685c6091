"""Turn fhir.resources / pydantic validation failures into errors naming the FHIR element."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from service.errors import BadRequest

M = TypeVar("M", bound=BaseModel)


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


def validated(model: type[M], data: Mapping[str, Any], root: str) -> M:
    """model.model_validate(data), every failure a 400 naming the element where it can be named.

    fhir.resources (fhir_core) raises plain TypeError/ValueError for some malformed input instead of a
    ValidationError; those are the sender's fault too, so they become 400s rather than 500s.
    """
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise invalid_from(exc, root) from None
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        raise BadRequest(f"{root} could not be read as FHIR R4 ({type(exc).__name__})", root) from None
