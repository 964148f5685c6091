"""Peers record contacts as PeerContact Encounters, read, search, correct and cancel their own; each change is
queued for write-back to the EHR."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response

from service.api import fhir_rest
from service.api.deps import Peer, SessionsDep, SettingsDep, wake_worker
from service.api.responses import FhirResponse
from service.app import contacts

router = APIRouter(prefix="/fhir/Encounter", tags=["peer"], dependencies=[Depends(fhir_rest.json_only)])


@router.post(
    "",
    response_class=FhirResponse,
    status_code=201,
    summary="Record a peer contact (PeerContact); If-None-Exist: identifier=<system>|<value>",
)
async def record_contact(request: Request, caller: Peer, sessions: SessionsDep, settings: SettingsDep) -> Response:
    data = await fhir_rest.fhir_body(request, settings, "Encounter")
    recorded = await contacts.record_contact(sessions, caller.subject, data, request.headers.get("if-none-exist"))
    wake_worker(request)  # its Encounter goes to the EHR now, not at the next poll
    return fhir_rest.written(
        request,
        settings,
        recorded.encounter,
        created=recorded.created,
        changes=recorded.changes,
        matched=recorded.matched,
    )


@router.put(
    "/{contact_id}",
    response_class=FhirResponse,
    summary='Correct one of my contacts, or cancel it with status entered-in-error (If-Match: W/"<version>")',
)
async def update_contact(
    contact_id: str, request: Request, caller: Peer, sessions: SessionsDep, settings: SettingsDep
) -> Response:
    data = await fhir_rest.fhir_body(request, settings, "Encounter")
    expected = fhir_rest.if_match(request)
    updated = await contacts.update_contact(sessions, caller.subject, contact_id, data, expected)
    wake_worker(request)
    return fhir_rest.written(request, settings, updated.encounter, created=False, changes=updated.changes)


@router.get("", response_class=FhirResponse, summary="Search my contacts (patient=Patient/<client id>, ...)")
async def search_contacts(request: Request, caller: Peer, sessions: SessionsDep, settings: SettingsDep) -> FhirResponse:
    search = fhir_rest.search_request(request, "Encounter")
    return fhir_rest.search_answer(settings, search, await contacts.search_contacts(sessions, caller.subject, search))


@router.post("/_search", response_class=FhirResponse, summary="Search my contacts, the parameters in a form body")
async def search_contacts_by_post(
    request: Request, caller: Peer, sessions: SessionsDep, settings: SettingsDep
) -> FhirResponse:
    search = await fhir_rest.search_form(request, settings, "Encounter")
    return fhir_rest.search_answer(settings, search, await contacts.search_contacts(sessions, caller.subject, search))


@router.get("/{contact_id}", response_class=FhirResponse, summary="Read back one of my contacts")
async def read_contact(contact_id: str, caller: Peer, sessions: SessionsDep) -> FhirResponse:
    return FhirResponse(await contacts.read_contact(sessions, caller.subject, contact_id))


@router.get(
    "/{contact_id}/_history/{version}",
    response_class=FhirResponse,
    summary="Read a version of one of my contacts (only the current one is kept)",
)
async def vread_contact(contact_id: str, version: int, caller: Peer, sessions: SessionsDep) -> FhirResponse:
    return FhirResponse(await contacts.read_contact(sessions, caller.subject, contact_id, version))
