"""The peer app's reads: my clients, and one client's consented summary ($peer-summary, GET or POST)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel

from service.api import fhir_rest
from service.api.deps import (
    BEARER,
    Peer,
    SessionsDep,
    SettingsDep,
    caller_in_role,
    gatekeeper,
    get_sessions,
    get_settings,
    principal,
    read_body,
    require,
)
from service.api.hot import hand_solved_route
from service.api.paths import fhir_ids_in_path
from service.api.responses import FhirResponse, RenderedFhir
from service.api.text import url_without_nul
from service.app import peers, summary
from service.auth import Role
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


async def _client_summary_by_hand(request: Request) -> Response:
    """client_summary's dependencies, solved in FastAPI's order (service/api/hot.py)."""
    await url_without_nul(request)
    await fhir_ids_in_path(request)
    await fhir_rest.json_only(request)
    caller = await caller_in_role(request, Role.PEER)
    sessions, settings = await get_sessions(request), await get_settings(request)
    return await client_summary(request.path_params["client_id"], caller, sessions, settings)


@hand_solved_route(
    router,
    PEER_SUMMARY,
    _client_summary_by_hand,
    solves=[
        url_without_nul,
        fhir_ids_in_path,
        fhir_rest.json_only,
        require,
        principal,
        gatekeeper,
        BEARER,
        get_sessions,
        get_settings,
    ],
    methods=["GET"],
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
