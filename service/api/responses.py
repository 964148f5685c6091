"""FHIR responses are application/fhir+json; every error becomes an OperationOutcome here."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from fastapi.responses import JSONResponse

from service.errors import PeerwayError
from service.fhir.build import operation_outcome

FHIR_JSON = "application/fhir+json"


class FhirResponse(JSONResponse):
    media_type = FHIR_JSON

    def render(self, content: Any) -> bytes:
        return json.dumps(content, separators=(",", ":"), ensure_ascii=False).encode()


def outcome_response(
    status: int,
    code: str,
    diagnostics: str,
    expression: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> FhirResponse:
    """An OperationOutcome answering `status`; a 401 also names the scheme a caller should use."""
    severity = "error" if status >= 400 else "information"
    extra = dict(headers or {})
    if status == 401:
        extra.setdefault("WWW-Authenticate", "Bearer")
    return FhirResponse(
        operation_outcome(severity, code, diagnostics, expression), status_code=status, headers=extra or None
    )


def error_response(error: PeerwayError) -> FhirResponse:
    return outcome_response(error.status, error.code, error.diagnostics, error.expression, error.headers)
