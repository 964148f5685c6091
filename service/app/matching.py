"""Coordinators match peers with clients: profiles, the client's preferences, ranked suggestions with
reasons, confirmation, re-matching and ending episodes, and the caseload view.

The scoring itself is pure (service/matching.py); here it gets its inputs — never anything clinical.

Scope: a site's coordinator works on the site's episodes with the peers enabled at the site; a peer
organization's coordinator sets its own peers' profiles and status and sees their caseloads (client ids, site,
minutes) — nothing else. The free places a cap leaves count a peer's clients at every site.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from service.app import peers, profiles
from service.app.clock import utcnow
from service.app.uow import unit_of_work
from service.domain import matching
from service.domain.matching import ClientPreferences, PeerProfile, Ranking
from service.domain.vocabulary import END_REASONS, ON_WARD, REMATCH_REASONS, REQUESTERS, PeerStatus
from service.errors import Forbidden, InvalidResource, NotFound
from service.fhir.build import versioned
from service.store import repository
from service.store.db import SessionFactory, transaction
from service.store.matching import Assignment, ClientPreference, EpisodeClosure, PeerProfileRecord
from service.store.models import Client, Contact, Episode, PeerSupporter
from service.store.sites import DEFAULT_ORGANIZATION

MINIMUM_MINUTES_PER_CLIENT_WEEK = 60  # the program asks for at least one hour a week with each client


async def _scoped_peer(
    session: AsyncSession, peer_id: str, site: str | None, organization: str | None
) -> PeerSupporter:
    """The peer as the caller may reach it: enabled at the site (a site's coordinator), owned by the
    organization (its coordinator), or — neither given — the peer acting on themselves (/api/me)."""
    if organization is not None:
        return await peers.peer_of_organization(session, organization, peer_id)
    if site is not None:
        return await peers.peer_at_site(session, site, peer_id)
    peer = await session.get(PeerSupporter, peer_id)
    if peer is None:
        raise NotFound(f"no peer supporter {peer_id}")
    return peer


async def update_profile(
    sessions: SessionFactory, profile: PeerProfile, *, site: str | None = None, organization: str | None = None
) -> tuple[PeerProfile, int]:
    """Replace a peer's profile (name and status stay in step with the peer record)."""
    now = utcnow()
    async with transaction(sessions) as session:
        peer = await _scoped_peer(session, profile.peer_id, site, organization)
        if organization is None and site is not None and peer.organization_id != DEFAULT_ORGANIZATION:
            # Its profile and status hold at every site it serves: only its own organization changes them.
            raise Forbidden(
                f"peer supporter {peer.id} belongs to organization {peer.organization_id}, whose coordinators keep"
                " its profile and status"
            )
        await session.refresh(peer, with_for_update=True)
        record = await session.get(PeerProfileRecord, peer.id)
        profile = replace(profile, name=profile.name or peer.name)
        peer.name = profile.name
        peer.status = profile.status.value
        version = profiles.store_profile(session, profile, now, record)
    return profile, version


@dataclass(frozen=True)
class StoredProfile:
    """A peer's profile with its version and the FHIR Practitioner and PractitionerRole that carry it."""

    profile: PeerProfile
    version: int
    practitioner: dict[str, Any]
    role: dict[str, Any]


async def read_profile(
    sessions: SessionFactory, peer_id: str, *, site: str | None = None, organization: str | None = None
) -> StoredProfile:
    """The profile as stored, with its FHIR resources."""
    async with sessions() as session:
        await _scoped_peer(session, peer_id, site, organization)
        record = await session.get(PeerProfileRecord, peer_id)
        if record is None:
            raise NotFound(f"no peer supporter {peer_id}")
        return StoredProfile(
            profiles.profile_of(record),
            record.version,
            # meta.versionId and meta.lastUpdated (ETag, Last-Modified) as on every resource Peerway serves.
            versioned(json.loads(record.practitioner_json), record.version, record.updated_at),
            versioned(json.loads(record.role_json), record.version, record.updated_at),
        )


async def set_status(
    sessions: SessionFactory,
    peer_id: str,
    status: PeerStatus,
    *,
    site: str | None = None,
    organization: str | None = None,
) -> PeerProfile:
    """Pause, resume or retire a peer. A paused peer keeps their clients but gets no new ones.

    A peer acting on themselves (neither site nor organization) may pause and resume, never leave retirement:
    only their organization (or a site's coordinator, for the default organization) retires or reinstates them.
    """
    async with sessions() as session:
        await _scoped_peer(session, peer_id, site, organization)
        record = await session.get(PeerProfileRecord, peer_id)
        if record is None:
            raise NotFound(f"no peer supporter {peer_id}")
        current = profiles.profile_of(record)
    if site is None and organization is None and PeerStatus.INACTIVE in (current.status, status):
        raise Forbidden("retiring or reinstating a peer supporter is their organization's decision")
    updated, _ = await update_profile(sessions, replace(current, status=status), site=site, organization=organization)
    return updated


async def set_preferences(
    sessions: SessionFactory, site: str, episode_id: str, preferences: ClientPreferences
) -> ClientPreferences:
    """Record what the client agreed to share for matching (replaces what was recorded before)."""
    now = utcnow()
    async with transaction(sessions) as session:
        episode = await peers.episode_in_scope(session, site, episode_id)
        preferences = replace(preferences, client_id=episode.client_id)
        stored = await session.get(ClientPreference, episode_id)
        if stored is None:
            stored = ClientPreference(episode_id=episode_id)
            session.add(stored)
        stored.preference_json = profiles.preferences_to_json(preferences)
        stored.updated_at = now
    return preferences


async def read_preferences(sessions: SessionFactory, site: str, episode_id: str) -> ClientPreferences:
    async with sessions() as session:
        episode = await peers.episode_in_scope(session, site, episode_id)
        return await profiles.preferences_of(session, episode.id, episode.client_id)


async def suggest(sessions: SessionFactory, site: str, episode_id: str, limit: int = 10) -> Ranking:
    """Peers enabled at the site ranked for the episode's client, best first, each with reasons; excluded
    peers with why."""
    async with sessions() as session:
        episode = await peers.episode_in_scope(session, site, episode_id, open_only=True)
        preferences = await profiles.preferences_of(session, episode.id, episode.client_id)
        tried = await profiles.tried_peers(session, episode_id)
        candidates = await profiles.candidates(session, site=site)
    on_ward = episode.state == ON_WARD
    return matching.rank(preferences, candidates, on_ward=on_ward, tried=tried, limit=limit)


async def confirm(sessions: SessionFactory, site: str, episode_id: str, peer_id: str) -> peers.EpisodeView:
    """Assign a suggested peer, keeping their score in the history."""
    ranking = await suggest(sessions, site, episode_id, limit=10_000)
    chosen = next((s for s in ranking.suggestions if s.peer_id == peer_id), None)
    if chosen is None:
        why = next((e.reason for e in ranking.excluded if e.peer_id == peer_id), "not a peer supporter at this site")
        raise InvalidResource(f"peer {peer_id} cannot be suggested: {why}", "peer_id")
    return await peers.assign_peer(sessions, site, episode_id, peer_id, suggested=True, score=chosen.score)


async def rematch(
    sessions: SessionFactory, site: str, episode_id: str, requested_by: str, reason: str, note: str | None = None
) -> peers.EpisodeView:
    """Either side asks for a new peer: the pair ends, the reason is kept, the peer is not suggested again."""
    _check_rematch(requested_by, reason)
    async with unit_of_work(sessions) as uow:
        episode = await uow.episodes.get(episode_id, site=site, for_update=True)
        if episode is None or episode.peer_id is None:
            raise NotFound(f"no episode {episode_id} with a peer assigned")
        episode.rematch(utcnow(), requested_by=requested_by, reason=reason, note=note)
    return peers.episode_view(episode)


def _check_rematch(requested_by: str, reason: str) -> None:
    if requested_by not in REQUESTERS:
        raise InvalidResource(f"requested_by must be one of {sorted(REQUESTERS)}", "requested_by")
    if reason not in REMATCH_REASONS:
        raise InvalidResource(f"reason must be one of {sorted(REMATCH_REASONS)}", "reason")


async def rematch_by_peer(sessions: SessionFactory, peer_id: str, client_id: str, note: str | None) -> None:
    """A peer asks to stop working with one of their clients (404 for anyone else's client)."""
    async with unit_of_work(sessions) as uow:
        episode = await uow.episodes.of_peer(peer_id, client_id)
        if episode is None:
            raise NotFound(f"Patient/{client_id} is not known")
        episode.rematch(utcnow(), requested_by="peer", reason="peer-request", note=note)


async def end_episode(
    sessions: SessionFactory, site: str, episode_id: str, reason: str, note: str | None = None
) -> None:
    """The program's work with the client ends; the peer's place is freed; the ending is kept."""
    if reason not in END_REASONS:
        raise InvalidResource(f"reason must be one of {sorted(END_REASONS)}", "reason")
    async with unit_of_work(sessions) as uow:
        episode = await uow.episodes.get(episode_id, site=site, for_update=True)
        if episode is None or episode.closed:
            raise NotFound(f"no open episode {episode_id}")
        episode.end(utcnow(), reason, note)


@dataclass(frozen=True)
class HistoryEntry:
    peer_id: str
    started_at: datetime
    suggested: bool
    score: float | None
    ended_at: datetime | None
    end_kind: str | None
    end_reason: str | None
    requested_by: str | None
    note: str | None


async def history(
    sessions: SessionFactory, site: str, episode_id: str
) -> tuple[Sequence[HistoryEntry], EpisodeClosure | None]:
    async with sessions() as session:
        await peers.episode_in_scope(session, site, episode_id)
        rows = await session.execute(
            select(Assignment).where(Assignment.episode_id == episode_id).order_by(Assignment.started_at, Assignment.id)
        )
        entries = [
            HistoryEntry(
                a.peer_id,
                a.started_at,
                a.suggested,
                a.score,
                a.ended_at,
                a.end_kind,
                a.end_reason,
                a.requested_by,
                a.note,
            )
            for a in rows.scalars().all()
        ]
        return entries, await session.get(EpisodeClosure, episode_id)


@dataclass(frozen=True)
class ClientLoad:
    client_id: str
    episode_id: str
    minutes_last_7_days: int
    site: str = ""

    @property
    def below_minimum(self) -> bool:
        return self.minutes_last_7_days < MINIMUM_MINUTES_PER_CLIENT_WEEK


@dataclass(frozen=True)
class Caseload:
    peer_id: str
    name: str
    status: str
    caseload_cap: int
    clients: tuple[ClientLoad, ...]
    free_places: int = 0  # the cap less the peer's clients at every site (the only figure counting other sites)


async def _loads(
    session: AsyncSession, since: datetime, *, site: str | None, peer_ids: Sequence[str] | None
) -> dict[str, list[ClientLoad]]:
    """Assigned episodes by peer with their minutes since `since`: of one site's clients, or of some peers."""
    query = (
        select(Episode.id, Episode.client_id, Episode.peer_id, Client.site, func.coalesce(func.sum(Contact.minutes), 0))
        .join(Client, Client.id == Episode.client_id)
        .outerjoin(Contact, (Contact.episode_id == Episode.id) & (Contact.started_at >= since))
        .where(Episode.peer_id.is_not(None))
        .group_by(Episode.id, Episode.client_id, Episode.peer_id, Client.site)
    )
    if site is not None:
        query = query.where(Client.site == site)
    if peer_ids is not None:
        query = query.where(Episode.peer_id.in_(peer_ids))
    by_peer: dict[str, list[ClientLoad]] = {}
    for episode_id, client_id, peer_id, client_site, minutes in (await session.execute(query)).all():
        by_peer.setdefault(str(peer_id), []).append(ClientLoad(client_id, episode_id, int(minutes or 0), client_site))
    return by_peer


async def _caseloads(
    session: AsyncSession, peer_rows: Sequence[PeerSupporter], loads: dict[str, list[ClientLoad]]
) -> list[Caseload]:
    everywhere = await profiles.caseloads(session)
    out = []
    for peer in peer_rows:
        record = await session.get(PeerProfileRecord, peer.id)
        if record is None:
            continue
        profile = profiles.profile_of(record)
        shown = tuple(sorted(loads.get(peer.id, []), key=lambda c: (c.client_id, c.episode_id)))
        free = max(0, profile.caseload_cap - everywhere.get(peer.id, 0))
        out.append(Caseload(peer.id, profile.name, profile.status.value, profile.caseload_cap, shown, free))
    return sorted(out, key=lambda c: (c.name, c.peer_id))


async def caseload_view(sessions: SessionFactory, site: str, now: datetime | None = None) -> list[Caseload]:
    """A site's coordinator: each peer enabled at the site (or still holding one of its clients) with the
    site's clients only and their minutes of contact in the last 7 days against the one-hour-a-week minimum."""
    now = now or utcnow()
    async with sessions() as session:
        loads = await _loads(session, now - timedelta(days=7), site=site, peer_ids=None)
        enabled = {p.id: p for p in await repository.peers(session, site=site)}
        holding = [p for p in loads if p not in enabled]
        if holding:
            rows = await session.execute(select(PeerSupporter).where(PeerSupporter.id.in_(holding)))
            enabled.update({p.id: p for p in rows.scalars()})
        return await _caseloads(session, list(enabled.values()), loads)


async def organization_caseloads(
    sessions: SessionFactory, organization: str, now: datetime | None = None
) -> list[Caseload]:
    """An organization's coordinator: its own peers' clients (ids and site) and minutes, at every site."""
    now = now or utcnow()
    async with sessions() as session:
        own = list(await repository.peers(session, organization=organization))
        loads = await _loads(session, now - timedelta(days=7), site=None, peer_ids=[p.id for p in own])
        return await _caseloads(session, own, loads)
