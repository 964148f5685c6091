"""Coordinators read the accounting of disclosures for a client."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from service.api import fhir_rest
from service.api.deps import Coordinator, SessionsDep, SettingsDep
from service.api.responses import FhirResponse
from service.app.audit import search_disclosures

router = APIRouter(prefix="/fhir/AuditEvent", tags=["audit"], dependencies=[Depends(fhir_rest.json_only)])


@router.get(
    "",
    response_class=FhirResponse,
    summary="Disclosures of one client's information: patient=Patient/<id>, date=ge2026-01-01&date=lt2026-02-01",
)
async def search_audit_events(
    request: Request, caller: Coordinator, sessions: SessionsDep, settings: SettingsDep
) -> FhirResponse:
    search = fhir_rest.search_request(request, "AuditEvent")
    return fhir_rest.search_answer(settings, search, await search_disclosures(sessions, caller.site, search))


@router.post("/_search", response_class=FhirResponse, summary="Disclosures of one client's information, by form")
async def search_audit_events_by_post(
    request: Request, caller: Coordinator, sessions: SessionsDep, settings: SettingsDep
) -> FhirResponse:
    search = await fhir_rest.search_form(request, settings, "AuditEvent")
    return fhir_rest.search_answer(settings, search, await search_disclosures(sessions, caller.site, search))
