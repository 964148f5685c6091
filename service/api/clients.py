"""The peer app's reads: my clients, and one client's consented summary ($peer-summary, GET or POST)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel

from service.api import fhir_rest
from service.api.deps import Peer, SessionsDep, SettingsDep, read_body
from service.api.responses import FhirResponse, RenderedFhir
from service.app import peers, summary
from service.fhir.operation import operation_parameters

router = APIRouter(tags=["peer"])

# Not the International Patient Summary's Patient/$summary (a document): our own operation, defined at
# fhir_profiles/data/OperationDefinition-peer-summary.json.
PEER_SUMMARY = "/fhir/Patient/{client_id}/$peer-summary"


class MyClient(BaseModel):
    client_id: str
    patient: str
    summary: str


@router.get("/api/me/clients", summary="The clients assigned to the calling peer (ids only)")
async def my_clients(caller: Peer, sessions: SessionsDep) -> list[MyClient]:
    mine = await peers.clients_of_peer(sessions, caller.subject)
    return [MyClient(client_id=c, patient=f"Patient/{c}", summary=PEER_SUMMARY.format(client_id=c)) for c in mine]


@router.get(
    PEER_SUMMARY,
    dependencies=[Depends(fhir_rest.json_only)],
    response_class=FhirResponse,
    summary="The consented summary of one of my clients (Bundle, type collection)",
)
async def client_summary(client_id: str, caller: Peer, sessions: SessionsDep, settings: SettingsDep) -> RenderedFhir:
    return RenderedFhir(await summary.read_summary_json(sessions, settings.base_url, caller.subject, client_id))


@router.post(
    PEER_SUMMARY,
    dependencies=[Depends(fhir_rest.json_only)],
    response_class=FhirResponse,
    summary="The same summary, asked with POST (an empty body or a Parameters resource without parameters)",
)
async def client_summary_posted(
    client_id: str, request: Request, caller: Peer, sessions: SessionsDep, settings: SettingsDep
) -> RenderedFhir:
    operation_parameters(await read_body(request, settings), "peer-summary")
    return RenderedFhir(await summary.read_summary_json(sessions, settings.base_url, caller.subject, client_id))
