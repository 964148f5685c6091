"""The input of a FHIR operation called with POST: nothing, or a Parameters resource naming only what it takes."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from fhir.resources.R4B.parameters import Parameters

from service.errors import BadRequest
from service.fhir.parse import load_json
from service.fhir.validation import validated


def operation_parameters(body: bytes, operation: str, accepted: Collection[str] = ()) -> dict[str, Any]:
    """An operation's POST body -> its parameters by name ({} for an empty body).

    FHIR lets a client POST any operation with a Parameters resource (and GET one that changes nothing). A
    parameter the operation does not define is refused (400) rather than silently ignored, naming it.
    """
    if not body.strip():
        return {}
    data = load_json(body, "Parameters")
    validated(Parameters, data, "Parameters")
    found: dict[str, Any] = {}
    for index, parameter in enumerate(data.get("parameter", [])):
        name = parameter.get("name")
        if name not in accepted:
            where = f"Parameters.parameter[{index}].name"
            raise BadRequest(f"{where}: ${operation} takes no parameter {str(name)[:64]!r}", where)
        found[name] = parameter
    return found
