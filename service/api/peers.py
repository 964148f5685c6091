"""Coordinators: peer supporters, episodes and hand assignment; peer organizations: their own peers.

A site's coordinator (/api/peers, /api/episodes) sees the site's clients and the peers enabled at the site.
Peer organizations' coordinators work under /api/org (service/api/organizations.py). Another site's episode is a
404 like a missing one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field

from service.api.deps import Coordinator, SessionsDep
from service.api.text import Input
from service.app import peers

router = APIRouter(prefix="/api", tags=["coordinator"])


class PeerIn(Input):
    name: str = Field(min_length=1, max_length=200)


class PeerOut(BaseModel):
    id: str
    name: str
    status: str
    practitioner: str = Field(description="How a Consent names this peer: Practitioner/<id>")


class EpisodeOut(BaseModel):
    id: str
    client_id: str
    patient: str = Field(description="How a Consent names the client: Patient/<client_id>")
    state: str
    admitted_at: datetime | None
    discharged_at: datetime | None
    discharge_disposition: str | None
    peer_id: str | None
    ended_at: datetime | None = Field(description="When the program ended the episode; null while it is open")
    end_reason: str | None = Field(description="Why the program ended it (episode-end-reason); null while open")


class AssignmentIn(Input):
    peer_id: str = Field(min_length=1, max_length=64)


def _peer(p: peers.PeerView) -> PeerOut:
    return PeerOut(id=p.id, name=p.name, status=p.status, practitioner=p.practitioner)


def episode_out(e: peers.EpisodeView) -> EpisodeOut:
    return EpisodeOut(
        id=e.id,
        client_id=e.client_id,
        patient=f"Patient/{e.client_id}",
        state=e.state,
        admitted_at=e.admitted_at,
        discharged_at=e.discharged_at,
        discharge_disposition=e.discharge_disposition,
        peer_id=e.peer_id,
        ended_at=e.ended_at,
        end_reason=e.end_reason,
    )


@router.post("/peers", status_code=201, summary="Register a peer supporter (organization default, this site)")
async def register_peer(body: PeerIn, caller: Coordinator, sessions: SessionsDep) -> PeerOut:
    return _peer(await peers.register_peer(sessions, caller.site, body.name))


@router.get("/peers", summary="List the peer supporters enabled at this site")
async def list_peers(caller: Coordinator, sessions: SessionsDep) -> list[PeerOut]:
    return [_peer(p) for p in await peers.list_peers(sessions, caller.site)]


@router.get(
    "/episodes",
    summary="List this site's clients' episodes, oldest first, a page at a time",
    description=(
        "Each page holds `limit` episodes; when more follow, the `Link` header (RFC 8288) names the next page"
        ' (`rel="next"`). `ended=false`: only the episodes the program has not ended; `ended=true`: only those it'
        " ended (an ended episode's `state` is where the hospital last left it; `ended_at` says it is over)."
    ),
)
async def list_episodes(
    caller: Coordinator,
    sessions: SessionsDep,
    request: Request,
    response: Response,
    ended: Annotated[bool | None, Query(description="only ended (true) or only open (false) episodes")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = peers.EPISODE_PAGE,
    after: Annotated[str | None, Query(max_length=200, description="from the Link header only")] = None,
) -> list[EpisodeOut]:
    page = await peers.list_episodes(sessions, caller.site, limit=limit, after=after, ended=ended)
    if page.next_after is not None:
        query = {"limit": limit, "after": page.next_after} | ({} if ended is None else {"ended": str(ended).lower()})
        response.headers["Link"] = f'<{request.url.path}?{urlencode(query)}>; rel="next"'
    return [episode_out(e) for e in page.episodes]


@router.get("/episodes/{episode_id}", summary="One episode")
async def get_episode(episode_id: str, caller: Coordinator, sessions: SessionsDep) -> EpisodeOut:
    return episode_out(await peers.get_episode(sessions, caller.site, episode_id))


@router.put("/episodes/{episode_id}/peer", summary="Assign a peer supporter to the episode by hand")
async def assign_peer(episode_id: str, body: AssignmentIn, caller: Coordinator, sessions: SessionsDep) -> EpisodeOut:
    return episode_out(await peers.assign_peer(sessions, caller.site, episode_id, body.peer_id))
