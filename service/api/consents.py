"""Coordinators record, replace (or withdraw) and look up clients' Consents."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from service.api.deps import ConsentWriter, Coordinator, SessionsDep, SettingsDep, read_body, scope
from service.api.responses import FhirResponse
from service.app import consents
from service.fhir.build import searchset
from service.fhir.parse import load_json

router = APIRouter(prefix="/fhir/Consent", tags=["consent"])


@router.post(
    "",
    response_class=FhirResponse,
    status_code=201,
    summary="Record a client's Consent (R4 or R5)",
    dependencies=[Depends(scope("system/Consent.c"))],
)
async def create_consent(
    request: Request, caller: ConsentWriter, sessions: SessionsDep, settings: SettingsDep
) -> FhirResponse:
    data = load_json(await read_body(request, settings), "Consent")
    stored = await consents.create_consent(sessions, caller.site, data)
    return FhirResponse(
        stored,
        status_code=201,
        headers={"Location": f"{settings.base_url}/fhir/Consent/{stored['id']}/_history/1"},
    )


@router.put(
    "/{consent_id}",
    response_class=FhirResponse,
    summary="Replace or withdraw a Consent",
    dependencies=[Depends(scope("system/Consent.u"))],
)
async def replace_consent(
    consent_id: str, request: Request, caller: ConsentWriter, sessions: SessionsDep, settings: SettingsDep
) -> FhirResponse:
    data = load_json(await read_body(request, settings), "Consent")
    stored, created = await consents.replace_consent(sessions, caller.site, consent_id, data)
    return FhirResponse(stored, status_code=201 if created else 200)


@router.get("/{consent_id}", response_class=FhirResponse, summary="Read a Consent")
async def read_consent(consent_id: str, caller: Coordinator, sessions: SessionsDep) -> FhirResponse:
    return FhirResponse(await consents.read_consent(sessions, caller.site, consent_id))


@router.get("", response_class=FhirResponse, summary="Search a client's Consents")
async def search_consents(
    caller: Coordinator,
    sessions: SessionsDep,
    settings: SettingsDep,
    patient: Annotated[str, Query(min_length=1, description="Patient/<client id> or the EHR's Patient id")],
) -> FhirResponse:
    found = await consents.search_consents(sessions, caller.site, patient)
    return FhirResponse(searchset(found, settings.base_url, f"{settings.base_url}/fhir/Consent?patient={patient}"))
