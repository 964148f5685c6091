"""Coordinators register peer supporters and assign one to a client's episode by hand."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from service.app.clock import new_id, utcnow
from service.errors import InvalidResource, NotFound
from service.store import repository
from service.store.db import SessionFactory, transaction
from service.store.models import Episode, PeerSupporter


@dataclass(frozen=True)
class PeerView:
    id: str
    name: str
    status: str

    @property
    def practitioner(self) -> str:
        """How a Consent names this peer (Consent.provision.actor.reference)."""
        return f"Practitioner/{self.id}"


@dataclass(frozen=True)
class EpisodeView:
    id: str
    client_id: str
    state: str
    admitted_at: datetime | None
    discharged_at: datetime | None
    discharge_disposition: str | None
    peer_id: str | None


def _peer(p: PeerSupporter) -> PeerView:
    return PeerView(id=p.id, name=p.name, status=p.status)


def episode_view(e: Episode) -> EpisodeView:
    return EpisodeView(
        id=e.id,
        client_id=e.client_id,
        state=e.state,
        admitted_at=e.admitted_at,
        discharged_at=e.discharged_at,
        discharge_disposition=e.discharge_disposition,
        peer_id=e.peer_id,
    )


async def register_peer(sessions: SessionFactory, name: str) -> PeerView:
    """Add a peer supporter to the program (active from now)."""
    if not name.strip():
        raise InvalidResource("a peer supporter needs a name", "name")
    async with transaction(sessions) as session:
        peer = PeerSupporter(id=new_id(), name=name.strip(), status="active", created_at=utcnow())
        session.add(peer)
    return _peer(peer)


async def list_peers(sessions: SessionFactory) -> Sequence[PeerView]:
    async with sessions() as session:
        return [_peer(p) for p in await repository.peers(session)]


async def list_episodes(sessions: SessionFactory) -> Sequence[EpisodeView]:
    async with sessions() as session:
        return [episode_view(e) for e in await repository.episodes(session)]


async def get_episode(sessions: SessionFactory, episode_id: str) -> EpisodeView:
    async with sessions() as session:
        episode = await session.get(Episode, episode_id)
        if episode is None:
            raise NotFound(f"no episode {episode_id}")
        return episode_view(episode)


async def assign_peer(sessions: SessionFactory, episode_id: str, peer_id: str) -> EpisodeView:
    """Assign a peer to the episode (replacing any earlier one). Only active peers can be assigned."""
    async with transaction(sessions) as session:
        episode = await session.get(Episode, episode_id, with_for_update=True)
        if episode is None:
            raise NotFound(f"no episode {episode_id}")
        peer = await session.get(PeerSupporter, peer_id)
        if peer is None or peer.status != "active":
            raise InvalidResource(f"no active peer supporter {peer_id}", "peer_id")
        episode.peer_id = peer.id
        episode.assigned_at = utcnow()
        episode.updated_at = episode.assigned_at
    return episode_view(episode)


async def clients_of_peer(sessions: SessionFactory, peer_id: str) -> Sequence[str]:
    """Client ids whose current episode has this peer assigned (nothing else: the rest is consent's)."""
    async with sessions() as session:
        found: list[str] = []
        for episode in await repository.episodes(session, peer_id=peer_id):
            current = await repository.current_episode(session, episode.client_id)
            if current is not None and current.id == episode.id and episode.client_id not in found:
                found.append(episode.client_id)
        return found
