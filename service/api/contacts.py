"""Peers record contacts as PeerContact Encounters; each is queued for write-back to the EHR."""

from __future__ import annotations

from fastapi import APIRouter, Request

from service.api.deps import Peer, SessionsDep, SettingsDep, read_body
from service.api.responses import FhirResponse
from service.app import contacts
from service.fhir.parse import load_json

router = APIRouter(prefix="/fhir/Encounter", tags=["peer"])


@router.post("", response_class=FhirResponse, status_code=201, summary="Record a peer contact (PeerContact)")
async def record_contact(request: Request, caller: Peer, sessions: SessionsDep, settings: SettingsDep) -> FhirResponse:
    data = load_json(await read_body(request, settings), "Encounter")
    recorded = await contacts.record_contact(sessions, caller.subject, data)
    encounter = recorded.encounter
    return FhirResponse(
        encounter,
        status_code=201 if recorded.created else 200,
        headers={"Location": f"{settings.base_url}/fhir/Encounter/{encounter['id']}"},
    )


@router.get("/{contact_id}", response_class=FhirResponse, summary="Read back one of my contacts")
async def read_contact(contact_id: str, caller: Peer, sessions: SessionsDep) -> FhirResponse:
    return FhirResponse(await contacts.read_contact(sessions, caller.subject, contact_id))
