"""FHIR responses are application/fhir+json; every error becomes an OperationOutcome here.

Rendering is where FHIR's JSON rules hold for every answer at once: no empty arrays or objects, and a resource
with meta.versionId and meta.lastUpdated carries them as `ETag: W/"n"` and `Last-Modified`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

from fastapi.responses import JSONResponse, Response

from service.errors import PeerwayError
from service.fhir.build import operation_outcome, without_empty
from service.fhir.ids import is_fhir_id

FHIR_JSON = "application/fhir+json"
# What every FHIR answer says it is: R4 http.html, "responses SHALL explicitly set the character encoding to UTF-8
# using the charset parameter" (Starlette adds a charset to text/* types only).
FHIR_JSON_UTF8 = "application/fhir+json; charset=utf-8"


class FhirResponse(JSONResponse):
    media_type = FHIR_JSON_UTF8

    def __init__(
        self,
        content: Any,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        *,
        pretty: bool = False,
        **kw: Any,
    ) -> None:
        self._pretty = pretty  # _pretty=true: indented for a person reading it
        extra = dict(headers or {})
        extra.update(version_headers(content))
        super().__init__(content, status_code=status_code, headers=extra or None, **kw)

    def render(self, content: Any) -> bytes:
        kept = without_empty(content)
        if self._pretty:
            return json.dumps(kept, indent=2, ensure_ascii=False).encode()
        return json.dumps(kept, separators=(",", ":"), ensure_ascii=False).encode()


class RenderedFhir(Response):
    """A FHIR answer the use case rendered itself, exactly as FhirResponse would (service/fhir/build.py), for a
    resource without a version (no ETag or Last-Modified)."""

    media_type = FHIR_JSON_UTF8


def version_headers(content: Any) -> dict[str, str]:
    """ETag and Last-Modified of a resource that has a version (Bundles and OperationOutcomes have none)."""
    meta = content.get("meta") if isinstance(content, dict) else None
    if not isinstance(meta, dict):
        return {}
    headers: dict[str, str] = {}
    version = meta.get("versionId")
    if isinstance(version, str) and is_fhir_id(version):  # safe in a header; anything else gets no ETag
        headers["ETag"] = f'W/"{version}"'
    if isinstance(meta.get("lastUpdated"), str):
        try:
            moment = datetime.fromisoformat(meta["lastUpdated"].replace("Z", "+00:00"))
        except ValueError:
            return headers
        if moment.tzinfo is not None:
            headers["Last-Modified"] = format_datetime(moment.astimezone(UTC), usegmt=True)
    return headers


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
