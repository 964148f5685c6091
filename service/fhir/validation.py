"""Turn fhir.resources / pydantic validation failures into errors naming the FHIR element."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import ValidationError

from service.errors import BadRequest


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
