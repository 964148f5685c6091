"""Unauthenticated: the CapabilityStatement, liveness and readiness."""

from __future__ import annotations

import functools
import hashlib
from importlib.metadata import version

from fastapi import APIRouter, Depends, Request, Response

from service.api.deps import SessionsDep, SettingsDep
from service.api.fhir_rest import json_only
from service.api.responses import FHIR_JSON_UTF8, FhirResponse
from service.app.health import check_readiness
from service.fhir.capability import capability_statement

router = APIRouter(tags=["metadata"])


@router.get(
    "/fhir/metadata",
    response_class=FhirResponse,
    summary="CapabilityStatement (ETag; If-None-Match answers 304)",
    dependencies=[Depends(json_only)],
)
async def metadata(request: Request, settings: SettingsDep) -> Response:
    """The statement, with an ETag: a client that holds it asks with If-None-Match and gets 304 until Peerway
    changes (a new release, another base URL)."""
    body, etag = _statement(settings.base_url, version("peerway"))
    headers = {"ETag": etag}
    if _matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=FHIR_JSON_UTF8, headers=headers)


@functools.lru_cache(maxsize=8)
def _statement(base_url: str, release: str) -> tuple[bytes, str]:
    body = bytes(FhirResponse(capability_statement(base_url, release)).body)
    return body, f'W/"{hashlib.sha256(body).hexdigest()[:32]}"'


def _matches(if_none_match: str | None, etag: str) -> bool:
    """RFC 9110 If-None-Match, weak comparison: "*" or any listed tag equal to ours but for W/."""
    if not if_none_match:
        return False
    tags = [tag.strip().removeprefix("W/") for tag in if_none_match.split(",")]
    return "*" in tags or etag.removeprefix("W/") in tags


@router.get("/healthz", summary="Liveness: the process answers (the database is not asked)")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Readiness: the database answers and its schema is this release's (else 503 naming why)",
    responses={503: {"description": "Not ready: an OperationOutcome naming the reason, with Retry-After"}},
)
async def ready(sessions: SessionsDep) -> dict[str, str]:
    await check_readiness(sessions)
    return {"status": "ready"}
