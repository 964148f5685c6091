"""Peer profiles and clients' matching preferences: stored, loaded, and counted into candidates.

Profiles are stored as FHIR Practitioner + PractitionerRole; the matching view of each is cached by
(peer id, version), so a change is never served stale and 2,000 peers are not re-read on every suggestion.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import asdict
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from service.domain.matching import Candidate, ClientPreferences, PeerProfile
from service.domain.vocabulary import REMATCHED
from service.fhir import peer as peer_fhir
from service.fhir.build import to_json
from service.store.matching import Assignment, ClientPreference, PeerProfileRecord
from service.store.models import Episode, PeerSupporter
from service.store.sites import PeerSite

_CACHE_SIZE = 8192
_profiles: OrderedDict[tuple[str, int], PeerProfile] = OrderedDict()


def profile_of(record: PeerProfileRecord) -> PeerProfile:
    key = (record.peer_id, record.version)
    cached = _profiles.get(key)
    if cached is None:
        cached = peer_fhir.profile_from(json.loads(record.practitioner_json), json.loads(record.role_json))
        _profiles[key] = cached
        if len(_profiles) > _CACHE_SIZE:
            _profiles.popitem(last=False)
    return cached


def store_profile(session: AsyncSession, profile: PeerProfile, now: datetime, record: PeerProfileRecord | None) -> int:
    """Keep the profile as FHIR Practitioner + PractitionerRole; answers the new version."""
    if record is None:
        record = PeerProfileRecord(peer_id=profile.peer_id, version=0)
        session.add(record)
    version = record.version + 1
    record.practitioner_json = to_json(peer_fhir.practitioner(profile, version))
    record.role_json = to_json(peer_fhir.practitioner_role(profile, version))
    record.version = version
    record.updated_at = now
    return version


async def caseloads(session: AsyncSession) -> dict[str, int]:
    """Clients per peer now: distinct clients with an episode the peer is assigned to (a readmitted client
    whose new stay kept the same peer counts once)."""
    rows = await session.execute(
        select(Episode.peer_id, func.count(func.distinct(Episode.client_id)))
        .where(Episode.peer_id.is_not(None))
        .group_by(Episode.peer_id)
    )
    return {str(peer_id): int(count) for peer_id, count in rows.all()}


async def candidate(session: AsyncSession, peer_id: str) -> Candidate | None:
    record = await session.get(PeerProfileRecord, peer_id)
    if record is None:
        return None
    count = await session.scalar(select(func.count(func.distinct(Episode.client_id))).where(Episode.peer_id == peer_id))
    return Candidate(profile_of(record), int(count or 0))


async def candidates(session: AsyncSession, *, site: str | None = None) -> list[Candidate]:
    """Every peer (enabled at the site, when one is named) with their caseload at every site — a cap is a cap
    wherever the clients are. Only (id, version) is read for peers already cached: the FHIR JSON of a profile
    is read again only when its version changed."""
    loads = await caseloads(session)
    query = select(PeerProfileRecord.peer_id, PeerProfileRecord.version)
    if site is not None:
        query = query.join(PeerSite, PeerSite.peer_id == PeerProfileRecord.peer_id).where(PeerSite.site_id == site)
    versions = (await session.execute(query)).all()
    missing = [peer_id for peer_id, version in versions if (peer_id, version) not in _profiles]
    read: dict[str, PeerProfile] = {}
    if missing:
        rows = select(PeerProfileRecord).where(PeerProfileRecord.peer_id.in_(missing))
        read = {record.peer_id: profile_of(record) for record in (await session.execute(rows)).scalars()}
    found = []
    for peer_id, version in versions:
        profile = _profiles.get((peer_id, version)) or read.get(peer_id)
        if profile is not None:
            found.append(Candidate(profile, loads.get(peer_id, 0)))
    return found


def preferences_to_json(preferences: ClientPreferences) -> str:
    data = {k: sorted(v) if isinstance(v, frozenset) else v for k, v in asdict(preferences).items()}
    data["interests"] = list(preferences.interests)
    return json.dumps(data)


def preferences_from_json(text: str) -> ClientPreferences:
    data: dict[str, Any] = json.loads(text)
    return ClientPreferences(
        client_id=data["client_id"],
        peer_genders=frozenset(data.get("peer_genders", ())),
        languages=frozenset(data.get("languages", ())),
        interests=tuple(data.get("interests", ())),
        own_age_band=data.get("own_age_band"),
        own_gender=data.get("own_gender"),
        peer_age_bands=frozenset(data.get("peer_age_bands", ())),
        neighbourhood=data.get("neighbourhood"),
        excluded_peers=frozenset(data.get("excluded_peers", ())),
    )


async def preferences_of(session: AsyncSession, episode_id: str, client_id: str) -> ClientPreferences:
    """What the client shared for matching; nothing shared is an empty preference, never EHR data."""
    stored = await session.get(ClientPreference, episode_id)
    if stored is None:
        return ClientPreferences(client_id=client_id)
    return preferences_from_json(stored.preference_json)


async def tried_peers(session: AsyncSession, episode_id: str) -> frozenset[str]:
    """Peers re-matched away from this episode (at the client's or the peer's request)."""
    rows = await session.execute(
        select(Assignment.peer_id).where(Assignment.episode_id == episode_id, Assignment.end_kind == REMATCHED)
    )
    return frozenset(str(p) for p in rows.scalars().all())


async def peer_exists(session: AsyncSession, peer_id: str) -> PeerSupporter | None:
    return await session.get(PeerSupporter, peer_id)
