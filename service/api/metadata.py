"""Unauthenticated: the CapabilityStatement and a health check."""

from __future__ import annotations

from importlib.metadata import version

from fastapi import APIRouter

from service.api.deps import SessionsDep, SettingsDep
from service.api.responses import FhirResponse
from service.app.health import check_database
from service.fhir.capability import capability_statement

router = APIRouter(tags=["metadata"])


@router.get("/fhir/metadata", response_class=FhirResponse, summary="CapabilityStatement")
async def metadata(settings: SettingsDep) -> FhirResponse:
    return FhirResponse(capability_statement(settings.base_url, version("peerway")))


@router.get("/healthz", summary="Liveness and database reachability")
async def health(sessions: SessionsDep) -> dict[str, str]:
    await check_database(sessions)
    return {"status": "ok"}
