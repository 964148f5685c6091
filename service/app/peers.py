"""Coordinators register peer supporters and assign one to a client's episode by hand."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from service import matching
from service.app import profiles
from service.app.clock import new_id, utcnow
from service.app.delivery import queue_careteam
from service.errors import InvalidResource, NotFound
from service.matching import PeerProfile
from service.store import repository
from service.store.db import SessionFactory, transaction
from service.store.matching import Assignment, EpisodeClosure
from service.store.models import Episode, PeerSupporter
from service.store.sites import DEFAULT_ORGANIZATION


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
    """Add a peer supporter to the program (active from now, with a default profile to complete)."""
    if not name.strip():
        raise InvalidResource("a peer supporter needs a name", "name")
    now = utcnow()
    async with transaction(sessions) as session:
        peer = PeerSupporter(
            id=new_id(), name=name.strip(), status="active", created_at=now, organization_id=DEFAULT_ORGANIZATION
        )
        session.add(peer)
        await session.flush()
        profiles.store_profile(session, PeerProfile(peer_id=peer.id, name=peer.name), now, None)
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


async def assign_peer(
    sessions: SessionFactory, episode_id: str, peer_id: str, *, suggested: bool = False, score: float | None = None
) -> EpisodeView:
    """Assign a peer to the episode (replacing any earlier one), by hand or confirming a suggestion.

    The hard rules of matching hold either way: the peer is active, has a free place, was not excluded by the
    client and was not re-matched away from this client before. Every change is kept in the history.
    """
    async with transaction(sessions) as session:
        episode = await session.get(Episode, episode_id, with_for_update=True)
        if episode is None or await session.get(EpisodeClosure, episode_id) is not None:
            raise NotFound(f"no open episode {episode_id}")
        peer = await session.get(PeerSupporter, peer_id)
        if peer is None:
            raise InvalidResource(f"no peer supporter {peer_id}", "peer_id")
        if episode.peer_id == peer.id:
            return episode_view(episode)
        candidate = await profiles.candidate(session, peer.id)
        preferences = await profiles.preferences_of(session, episode)
        tried = await profiles.tried_peers(session, episode.id)
        why = "has no profile" if candidate is None else matching.exclusion(preferences, candidate, tried)
        if why is not None:
            raise InvalidResource(f"{peer.name} cannot be assigned: {why}", "peer_id")
        now = utcnow()
        await end_assignment(session, episode, now, kind="replaced")
        episode.peer_id = peer.id
        episode.assigned_at = now
        episode.updated_at = now
        session.add(
            Assignment(episode_id=episode.id, peer_id=peer.id, started_at=now, suggested=suggested, score=score)
        )
        await queue_careteam(session, episode.id)
    return episode_view(episode)


async def carry_peer_over(session: AsyncSession, previous: Episode, episode: Episode, now: datetime) -> None:
    """A client's new stay keeps the peer of the previous one: the program's presence goes on through a
    readmission. The move is kept in the history, and both stays' CareTeams are brought up to date."""
    peer_id = await end_assignment(session, previous, now, kind="new-stay")
    if peer_id is None:
        return
    episode.peer_id = peer_id
    episode.assigned_at = now
    episode.updated_at = now
    session.add(Assignment(episode_id=episode.id, peer_id=peer_id, started_at=now, suggested=False))
    await queue_careteam(session, previous.id)
    await queue_careteam(session, episode.id)


async def end_assignment(
    session: AsyncSession,
    episode: Episode,
    now: datetime,
    *,
    kind: str,
    reason: str | None = None,
    requested_by: str | None = None,
    note: str | None = None,
) -> str | None:
    """Close the episode's current assignment in the history and free the peer's place; answers the peer id."""
    peer_id = episode.peer_id
    if peer_id is None:
        return None
    current = await profiles.open_assignment(session, episode.id)
    if current is None:  # assigned before history was kept: record it now
        current = Assignment(
            episode_id=episode.id, peer_id=peer_id, started_at=episode.assigned_at or now, suggested=False
        )
        session.add(current)
    current.ended_at = now
    current.end_kind = kind
    current.end_reason = reason
    current.requested_by = requested_by
    current.note = note
    episode.peer_id = None
    episode.updated_at = now
    return peer_id


async def clients_of_peer(sessions: SessionFactory, peer_id: str) -> Sequence[str]:
    """Client ids whose current episode has this peer assigned (nothing else: the rest is consent's)."""
    async with sessions() as session:
        found: list[str] = []
        for episode in await repository.episodes(session, peer_id=peer_id):
            current = await repository.current_episode(session, episode.client_id)
            if current is not None and current.id == episode.id and episode.client_id not in found:
                found.append(episode.client_id)
        return found
