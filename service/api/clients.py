"""The peer app's reads: my clients, and one client's consented summary."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from service.api.deps import Peer, SessionsDep, SettingsDep
from service.api.responses import FhirResponse
from service.app import peers, summary

router = APIRouter(tags=["peer"])


class MyClient(BaseModel):
    client_id: str
    patient: str
    summary: str


@router.get("/api/me/clients", summary="The clients assigned to the calling peer (ids only)")
async def my_clients(caller: Peer, sessions: SessionsDep) -> list[MyClient]:
    mine = await peers.clients_of_peer(sessions, caller.subject)
    return [MyClient(client_id=c, patient=f"Patient/{c}", summary=f"/fhir/Patient/{c}/$summary") for c in mine]


@router.get(
    "/fhir/Patient/{client_id}/$summary",
    response_class=FhirResponse,
    summary="The consented summary of one of my clients (Bundle, type collection)",
)
async def client_summary(client_id: str, caller: Peer, sessions: SessionsDep, settings: SettingsDep) -> FhirResponse:
    return FhirResponse(await summary.read_summary(sessions, settings.base_url, caller.subject, client_id))
