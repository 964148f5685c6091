"""Coordinators record, replace (or withdraw) and look up clients' Consents."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response

from service.api import fhir_rest
from service.api.deps import ConsentWriter, Coordinator, SessionsDep, SettingsDep, scope
from service.api.responses import FhirResponse
from service.app import consents

router = APIRouter(prefix="/fhir/Consent", tags=["consent"], dependencies=[Depends(fhir_rest.json_only)])


@router.post(
    "",
    response_class=FhirResponse,
    status_code=201,
    summary="Record a client's Consent (R4 or R5); If-None-Exist: identifier=<system>|<value>",
    dependencies=[Depends(scope("system/Consent.c"))],
)
async def create_consent(
    request: Request, caller: ConsentWriter, sessions: SessionsDep, settings: SettingsDep
) -> Response:
    data = await fhir_rest.fhir_body(request, settings, "Consent")
    if_none_exist = request.headers.get("if-none-exist")
    stored, created = await consents.create_consent(sessions, caller.site, data, if_none_exist)
    return fhir_rest.written(request, settings, stored, created=created)


@router.put(
    "/{consent_id}",
    response_class=FhirResponse,
    summary='Replace or withdraw a Consent (If-Match: W/"<version>" makes it conditional on the version read)',
    dependencies=[Depends(scope("system/Consent.u"))],
)
async def replace_consent(
    consent_id: str, request: Request, caller: ConsentWriter, sessions: SessionsDep, settings: SettingsDep
) -> Response:
    data = await fhir_rest.fhir_body(request, settings, "Consent")
    expected = fhir_rest.if_match(request)
    stored, created = await consents.replace_consent(sessions, caller.site, consent_id, data, expected)
    return fhir_rest.written(request, settings, stored, created=created)


@router.get("/{consent_id}", response_class=FhirResponse, summary="Read a Consent")
async def read_consent(consent_id: str, caller: Coordinator, sessions: SessionsDep) -> FhirResponse:
    return FhirResponse(await consents.read_consent(sessions, caller.site, consent_id))


@router.get(
    "/{consent_id}/_history/{version}",
    response_class=FhirResponse,
    summary="Read a version of a Consent (only the current one is kept)",
)
async def vread_consent(consent_id: str, version: int, caller: Coordinator, sessions: SessionsDep) -> FhirResponse:
    return FhirResponse(await consents.read_consent(sessions, caller.site, consent_id, version))


@router.get("", response_class=FhirResponse, summary="Search Consents (parameters: see the CapabilityStatement)")
async def search_consents(
    request: Request, caller: Coordinator, sessions: SessionsDep, settings: SettingsDep
) -> FhirResponse:
    search = fhir_rest.search_request(request, "Consent")
    found = await consents.search_consents(sessions, caller.site, search)
    return fhir_rest.search_answer(settings, search, found)


@router.post("/_search", response_class=FhirResponse, summary="Search Consents, the parameters in a form body")
async def search_consents_by_post(
    request: Request, caller: Coordinator, sessions: SessionsDep, settings: SettingsDep
) -> FhirResponse:
    search = await fhir_rest.search_form(request, settings, "Consent")
    found = await consents.search_consents(sessions, caller.site, search)
    return fhir_rest.search_answer(settings, search, found)
