"""Coordinators read the accounting of disclosures for a client."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from service.api.deps import Coordinator, SessionsDep, SettingsDep
from service.api.responses import FhirResponse
from service.app.audit import disclosures
from service.fhir.build import searchset
from service.fhir.search import date_bounds

router = APIRouter(prefix="/fhir/AuditEvent", tags=["audit"])


@router.get("", response_class=FhirResponse, summary="Disclosures of one client's information")
async def search_audit_events(
    caller: Coordinator,
    sessions: SessionsDep,
    settings: SettingsDep,
    patient: Annotated[str, Query(min_length=1, description="Patient/<client id> or the EHR's Patient id")],
    date: Annotated[
        list[str] | None, Query(description="when recorded, FHIR style: date=ge2026-01-01&date=lt2026-02-01")
    ] = None,
) -> FhirResponse:
    since, until = date_bounds(date or [])
    found = await disclosures(sessions, caller.site, patient, since, until)
    return FhirResponse(searchset(found, settings.base_url, f"{settings.base_url}/fhir/AuditEvent?patient={patient}"))
