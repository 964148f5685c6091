"""Unauthenticated: the CapabilityStatement, liveness and readiness."""

from __future__ import annotations

from importlib.metadata import version

from fastapi import APIRouter, Depends

from service.api.deps import SessionsDep, SettingsDep
from service.api.fhir_rest import json_only
from service.api.responses import FhirResponse
from service.app.health import check_readiness
from service.fhir.capability import capability_statement

router = APIRouter(tags=["metadata"])


@router.get(
    "/fhir/metadata",
    response_class=FhirResponse,
    summary="CapabilityStatement",
    dependencies=[Depends(json_only)],
)
async def metadata(settings: SettingsDep) -> FhirResponse:
    return FhirResponse(capability_statement(settings.base_url, version("peerway")))


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
