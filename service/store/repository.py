"""Queries the use cases share. Plain functions over an AsyncSession; no commits here.

Scope: every query a site's coordinator reaches takes the site and filters by it in SQL (a client belongs to
the site whose EHR sent it; an episode, consent or audit record belongs to its client's site). Something of
another site is simply not found, exactly like something that does not exist.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import CompoundSelect, Text, bindparam, cast, literal, null, select, tuple_, union_all
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import aliased

from service.store.background import BackgroundFetch, BackgroundItem
from service.store.direct import DirectRead
from service.store.matching import EpisodeClosure, not_cancelled
from service.store.models import Client, ConsentDocument, Contact, Episode, PeerSupporter, UTCDateTime
from service.store.sites import PeerSite


async def client_by_ehr_id(session: AsyncSession, site: str, ehr_patient_id: str) -> Client | None:
    result = await session.execute(select(Client).where(Client.site == site, Client.ehr_patient_id == ehr_patient_id))
    return result.scalar_one_or_none()


async def client_at(session: AsyncSession, site: str, client_id: str) -> Client | None:
    """The client with this Peerway id, if it belongs to the site (None for another site's, as for none)."""
    client = await session.get(Client, client_id)
    return client if client is not None and client.site == site else None


async def client_named(session: AsyncSession, site: str, patient: str) -> Client | None:
    """A site's client named as Patient/<client id>, <client id> or the site's EHR Patient id."""
    patient_id = patient.removeprefix("Patient/")
    return await client_at(session, site, patient_id) or await client_by_ehr_id(session, site, patient_id)


async def episode_at(session: AsyncSession, site: str, episode_id: str, *, for_update: bool = False) -> Episode | None:
    """The episode, if its client belongs to the site."""
    query = select(Episode).join(Client, Client.id == Episode.client_id)
    query = query.where(Episode.id == episode_id, Client.site == site)
    if for_update:
        query = query.with_for_update(of=Episode)
    return (await session.execute(query)).scalar_one_or_none()


async def episode_by_encounter(session: AsyncSession, client_id: str, ehr_encounter_id: str) -> Episode | None:
    result = await session.execute(
        select(Episode).where(Episode.client_id == client_id, Episode.ehr_encounter_id == ehr_encounter_id)
    )
    return result.scalar_one_or_none()


async def current_episode(session: AsyncSession, client_id: str) -> Episode | None:
    """The client's newest episode (the one the program works in)."""
    result = await session.execute(
        select(Episode)
        .where(Episode.client_id == client_id, not_cancelled(Episode.id))
        .order_by(Episode.created_at.desc(), Episode.id.desc())  # a tie (one instant) goes the same way everywhere
        .limit(1)
    )
    return result.scalar_one_or_none()


async def episode_of_peer(session: AsyncSession, peer_id: str, client_id: str) -> Episode | None:
    """The client's current episode if — and only if — this peer is assigned to it."""
    episode = await current_episode(session, client_id)
    return episode if episode is not None and episode.peer_id == peer_id else None


@dataclass(frozen=True)
class PeerView:
    """What the peer's summary reads of a client and their current episode, with the assigned peer's name."""

    client_id: str
    patient_json: str
    episode_id: str
    peer_id: str
    peer_name: str
    admitted_at: datetime | None
    encounter_json: str


# The summary path's statements are built once, with bound parameters: building a statement per call and
# adapting the cached compiled form to it cost more CPU than running it. Columns only, no ORM identity map, and
# one statement per read (through aiosqlite each costs about 150 us of CPU, 100 us through asyncpg): rows
# (kind, a, b, c, d, e, n, t1, t2) of a UNION ALL, decision_rows and peer_summary_rows say which column is what.
_TEXT_NULL = cast(null(), Text)
_TIME_NULL = cast(null(), UTCDateTime())
_CONSENTS = select(
    literal("c").label("kind"),
    ConsentDocument.id.label("a"),
    ConsentDocument.resource_json.label("b"),
    _TEXT_NULL.label("c"),
    _TEXT_NULL.label("d"),
    _TEXT_NULL.label("e"),
    ConsentDocument.version_id.label("n"),
    ConsentDocument.created_at.label("t1"),
    _TIME_NULL.label("t2"),
).where(ConsentDocument.client_id == bindparam("client_id"))
_ITEMS = select(
    literal("i"),
    BackgroundItem.id,
    BackgroundItem.category,
    BackgroundItem.resource_json,
    BackgroundItem.labels_json,
    null(),
    null(),
    BackgroundItem.data_date,
    null(),
).where(BackgroundItem.client_id == bindparam("client_id"))
_FETCHES = select(
    literal("f"),
    BackgroundFetch.category,
    BackgroundFetch.status,
    BackgroundFetch.error,
    null(),
    null(),
    BackgroundFetch.items,
    BackgroundFetch.attempted_at,
    BackgroundFetch.succeeded_at,
).where(BackgroundFetch.client_id == bindparam("client_id"))
# The client's current episode: the newest that was not cancelled (as current_episode), with its client and peer.
_NEWER = aliased(Episode)
_CURRENT = (
    select(_NEWER.id)
    .where(
        _NEWER.client_id == bindparam("client_id"),
        not_cancelled(_NEWER.id),
    )
    .order_by(_NEWER.created_at.desc(), _NEWER.id.desc())
    .limit(1)
    .scalar_subquery()
)
_EPISODE = (
    select(
        literal("p"),
        Episode.id,
        Client.patient_json,
        Episode.peer_id,
        PeerSupporter.name,
        Episode.encounter_json,
        null(),
        Episode.admitted_at,
        null(),
    )
    .join(Client, Client.id == Episode.client_id)
    .outerjoin(PeerSupporter, PeerSupporter.id == Episode.peer_id)
    .where(Episode.id == _CURRENT)
)
_Rows = CompoundSelect[str, str, str, str | None, str | None, str | None, int | None, datetime | None, datetime | None]
_DECISION_ROWS: _Rows = union_all(_CONSENTS, _ITEMS, _FETCHES)
_SUMMARY_ROWS: _Rows = union_all(_CONSENTS, _ITEMS, _FETCHES, _EPISODE)
_SUMMARY_READ = DirectRead(_SUMMARY_ROWS)


class _Row(NamedTuple):
    """One row of _SUMMARY_ROWS (what each column holds depends on `kind`)."""

    kind: str
    a: Any
    b: Any
    c: Any
    d: Any
    e: Any
    n: Any
    t1: Any
    t2: Any


@dataclass(frozen=True)
class DecisionRows:
    """A client's Consents (resource JSON, oldest first), background items (id, category, resource JSON, labels
    JSON, data date; by category and id) and fetch states (category, status, attempted, succeeded, items, error;
    by category), as stored."""

    consents: tuple[str, ...]
    items: tuple[tuple[str, str, str, str, datetime | None], ...]
    fetches: tuple[tuple[str, str, datetime, datetime | None, int, str | None], ...]


def _decision_rows(rows: Sequence[Any]) -> DecisionRows:
    consents = sorted((r.t1, r.a, r.b) for r in rows if r.kind == "c")
    items = sorted((r.b, r.a, r.c, r.d, r.t1) for r in rows if r.kind == "i")
    fetches = sorted((r.a, r.b, r.t1, r.t2, r.n, r.c) for r in rows if r.kind == "f")
    return DecisionRows(
        consents=tuple(c[2] for c in consents),
        items=tuple((i[1], i[0], i[2], i[3], i[4]) for i in items),
        fetches=tuple(fetches),
    )


async def decision_rows(session: AsyncSession, client_id: str) -> DecisionRows:
    """Everything a consent decision about the client reads besides the snapshots, in one statement."""
    return _decision_rows((await (await session.connection()).execute(_DECISION_ROWS, {"client_id": client_id})).all())


async def peer_summary_rows(engine: AsyncEngine, peer_id: str, client_id: str) -> tuple[PeerView, DecisionRows] | None:
    """The client's current episode if — and only if — this peer is assigned to it (as episode_of_peer), with the
    client's snapshot and the peer's name, and the decision's rows: all in one statement, run in one driver call
    outside any transaction (one statement reads one consistent snapshot; service/store/direct.py)."""
    rows = [_Row(*row) for row in await _SUMMARY_READ.rows(engine, {"client_id": client_id})]
    episode = next((r for r in rows if r.kind == "p"), None)
    if episode is None or episode.c != peer_id or episode.d is None:
        return None
    view = PeerView(client_id, episode.b, episode.a, episode.c, episode.d, episode.t1, episode.e)
    return view, _decision_rows(rows)


async def episodes(session: AsyncSession, *, peer_id: str | None = None, site: str | None = None) -> Sequence[Episode]:
    """Episodes oldest first; of one peer (any site: a peer's own view) and/or of one site's clients."""
    query = select(Episode).order_by(Episode.created_at)
    if peer_id is not None:
        query = query.where(Episode.peer_id == peer_id)
    if site is not None:
        query = query.join(Client, Client.id == Episode.client_id).where(Client.site == site)
    return (await session.execute(query)).scalars().all()


class EpisodeRow(NamedTuple):
    id: str
    client_id: str
    state: str
    admitted_at: datetime | None
    discharged_at: datetime | None
    discharge_disposition: str | None
    peer_id: str | None
    created_at: datetime
    ended_at: datetime | None  # when the program ended it (None: open)
    end_reason: str | None


async def site_episodes_page(
    session: AsyncSession, site: str, limit: int, after: tuple[datetime, str] | None, *, ended: bool | None = None
) -> tuple[list[EpisodeRow], tuple[datetime, str] | None]:
    """The site's episodes oldest first (by creation, then id), `limit` of them after `after`; `ended`: only those
    the program ended (True) or only the open ones (False). With the key of the last, when more follow."""
    query = (
        select(
            Episode.id,
            Episode.client_id,
            Episode.state,
            Episode.admitted_at,
            Episode.discharged_at,
            Episode.discharge_disposition,
            Episode.peer_id,
            Episode.created_at,
            EpisodeClosure.ended_at,
            EpisodeClosure.reason,
        )
        .join(Client, Client.id == Episode.client_id)
        .outerjoin(EpisodeClosure, EpisodeClosure.episode_id == Episode.id)
        .where(Client.site == site)
        .order_by(Episode.created_at, Episode.id)
        .limit(limit + 1)
    )
    if ended is not None:
        query = query.where(EpisodeClosure.episode_id.is_not(None) if ended else EpisodeClosure.episode_id.is_(None))
    if after is not None:
        query = query.where(
            tuple_(Episode.created_at, Episode.id)
            > tuple_(literal(after[0], Episode.created_at.type), literal(after[1], Episode.id.type))
        )
    rows = [EpisodeRow._make(row) for row in await session.execute(query)]
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, ((rows[-1].created_at, rows[-1].id) if more else None)


async def peers(
    session: AsyncSession, *, site: str | None = None, organization: str | None = None
) -> Sequence[PeerSupporter]:
    """Peer supporters by name: those enabled at a site, and/or those of one organization."""
    query = select(PeerSupporter).order_by(PeerSupporter.name, PeerSupporter.id)
    if site is not None:
        query = query.join(PeerSite, PeerSite.peer_id == PeerSupporter.id).where(PeerSite.site_id == site)
    if organization is not None:
        query = query.where(PeerSupporter.organization_id == organization)
    return (await session.execute(query)).scalars().all()


async def peer_enabled_at(session: AsyncSession, peer_id: str, site: str) -> bool:
    return await session.get(PeerSite, (peer_id, site)) is not None


async def peer_of_organization(session: AsyncSession, organization: str, peer_id: str) -> PeerSupporter | None:
    """The peer, if the organization owns it (None for another organization's, as for none)."""
    peer = await session.get(PeerSupporter, peer_id)
    return peer if peer is not None and peer.organization_id == organization else None


async def consents_of(session: AsyncSession, client_id: str) -> Sequence[ConsentDocument]:
    result = await session.execute(
        select(ConsentDocument).where(ConsentDocument.client_id == client_id).order_by(ConsentDocument.created_at)
    )
    return result.scalars().all()


async def contact_by_app_identifier(session: AsyncSession, peer_id: str, identifier: str) -> Contact | None:
    result = await session.execute(
        select(Contact).where(Contact.peer_id == peer_id, Contact.app_identifier == identifier)
    )
    return result.scalar_one_or_none()
