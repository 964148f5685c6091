"""Tables for a client's background from the hospital EHR: the items kept (already reduced to what a peer may
need, see service/fhir/background.py) and, per category, when it was last fetched and how that went.

An item keeps the EHR's reference to its source only to replace it on the next fetch; the summary never shows it.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    CompoundSelect,
    ForeignKey,
    Index,
    Integer,
    Select,
    String,
    Text,
    and_,
    case,
    delete,
    func,
    or_,
    select,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute, Mapped, mapped_column

from service.store.jobs import PENDING, Job
from service.store.matching import EpisodeClosure, not_ended
from service.store.models import Base, Client, ConsentDocument, Episode, UTCDateTime

OK, FAILED = "ok", "failed"


class BackgroundItem(Base):
    """One appointment, goal, flag, support or condition of a client, as the summary would show it."""

    __tablename__ = "background_item"
    __table_args__ = (Index("ix_background_item_client_category", "client_id", "category"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_id: Mapped[str] = mapped_column(ForeignKey("client.id"))
    category: Mapped[str] = mapped_column(String(32))
    source: Mapped[str] = mapped_column(String(140))  # Type/id at the EHR: never disclosed
    resource_json: Mapped[str] = mapped_column(Text)  # the reduced resource, with Peerway's ids
    labels_json: Mapped[str] = mapped_column(Text)  # [[system, code], ...] the EHR put on the source
    data_date: Mapped[datetime | None] = mapped_column(UTCDateTime())
    fetched_at: Mapped[datetime] = mapped_column(UTCDateTime())


class BackgroundFetch(Base):
    """The last fetch of one category for one client: a failure keeps the items of the last success (stale)."""

    __tablename__ = "background_fetch"

    client_id: Mapped[str] = mapped_column(ForeignKey("client.id"), primary_key=True)
    category: Mapped[str] = mapped_column(String(32), primary_key=True)
    status: Mapped[str] = mapped_column(String(16))  # ok | failed
    attempted_at: Mapped[datetime] = mapped_column(UTCDateTime())
    succeeded_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    items: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)  # the EHR's status line, never a resource


async def items_of(session: AsyncSession, client_id: str) -> Sequence[BackgroundItem]:
    query = select(BackgroundItem).where(BackgroundItem.client_id == client_id)
    return (await session.execute(query.order_by(BackgroundItem.category, BackgroundItem.id))).scalars().all()


async def fetches_of(session: AsyncSession, client_id: str) -> Sequence[BackgroundFetch]:
    query = select(BackgroundFetch).where(BackgroundFetch.client_id == client_id)
    return (await session.execute(query.order_by(BackgroundFetch.category))).scalars().all()


async def replace_category(
    session: AsyncSession, client_id: str, category: str, items: Sequence[BackgroundItem], now: datetime
) -> None:
    """The category's items from the EHR are now exactly `items` (a fetch reads the whole category); the client's
    own answers (QuestionnaireResponse) stay."""
    await session.execute(
        delete(BackgroundItem).where(
            BackgroundItem.client_id == client_id,
            BackgroundItem.category == category,
            BackgroundItem.source.not_like("QuestionnaireResponse/%"),
        )
    )
    session.add_all(items)
    fetch = await session.get(BackgroundFetch, (client_id, category))
    if fetch is None:
        fetch = BackgroundFetch(client_id=client_id, category=category)
        session.add(fetch)
    fetch.status, fetch.attempted_at, fetch.succeeded_at, fetch.items, fetch.error = OK, now, now, len(items), None


async def record_failure(session: AsyncSession, client_id: str, category: str, error: str, now: datetime) -> None:
    """The fetch failed: the items of the last success stay (and are marked stale in the summary)."""
    fetch = await session.get(BackgroundFetch, (client_id, category))
    if fetch is None:
        fetch = BackgroundFetch(client_id=client_id, category=category, succeeded_at=None, items=0)
        session.add(fetch)
    fetch.status, fetch.attempted_at, fetch.error = FAILED, now, error[:500]


async def forget(session: AsyncSession, client_id: str, categories: Collection[str]) -> int:
    """Delete the EHR's items and the fetch state of these categories (no consent could release them any more).
    The client's own answers (QuestionnaireResponse) stay: they replace them with new answers."""
    if not categories:
        return 0
    result = await session.execute(
        delete(BackgroundItem).where(
            BackgroundItem.client_id == client_id,
            BackgroundItem.category.in_(sorted(categories)),
            BackgroundItem.source.not_like("QuestionnaireResponse/%"),
        )
    )
    await session.execute(
        delete(BackgroundFetch).where(
            BackgroundFetch.client_id == client_id, BackgroundFetch.category.in_(sorted(categories))
        )
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def forget_source(session: AsyncSession, client_id: str, source_type: str) -> None:
    """Delete the client's items that came from resources of this type (an earlier QuestionnaireResponse)."""
    await session.execute(
        delete(BackgroundItem).where(
            BackgroundItem.client_id == client_id, BackgroundItem.source.like(f"{source_type}/%")
        )
    )


def _in_community() -> ColumnElement[bool]:
    """An episode in the community that the program has not ended (closing one leaves its state as it was)."""
    return and_(Episode.state == "in-community", not_ended(Episode.id))


async def due_for_refresh(
    session: AsyncSession, before: datetime, failed_before: datetime, limit: int
) -> Sequence[tuple[str, str]]:
    """(client id, site) of clients in the community, in an episode the program has not ended, with a category
    last attempted before `before`, the longest waiting first, at most `limit`; one whose last read failed, from
    `failed_before` on. A client's first fetch comes from the discharge or a consent, not from here."""
    last = (
        select(
            BackgroundFetch.client_id,
            func.min(BackgroundFetch.attempted_at).label("oldest"),
            func.max(case((BackgroundFetch.status == FAILED, 1), else_=0)).label("failing"),
        )
        .group_by(BackgroundFetch.client_id)
        .subquery()
    )
    query = (
        select(Client.id, Client.site)
        .join(Episode, Episode.client_id == Client.id)
        .join(last, last.c.client_id == Client.id)
        .where(
            _in_community(),
            or_(last.c.oldest < before, and_(last.c.failing == 1, last.c.oldest < failed_before)),
        )
        .group_by(Client.id, Client.site, last.c.oldest)
        .order_by(last.c.oldest, Client.id)
        .limit(limit)
    )
    return [(row[0], row[1]) for row in (await session.execute(query)).all()]


def _review_scope() -> CompoundSelect[str]:
    """The ids of every client Peerway holds EHR background of, whatever their episode, and of every client in
    the community whose episode the program has not ended (who may have a consent coming into force)."""
    return select(BackgroundFetch.client_id.label("client_id")).union(
        select(BackgroundItem.client_id).where(BackgroundItem.source.not_like("QuestionnaireResponse/%")),
        select(Episode.client_id).where(_in_community()),
    )


@dataclass(frozen=True)
class ReviewState:
    """What the periodic consent review reads of one client, but for the Consents' text and the clock. While it
    stays the same and no Consent period begins or ends, the review decides what it decided before."""

    site: str
    consents: tuple[tuple[str, int, datetime], ...]  # (id, version, updated): the version grows on every change
    episodes: tuple[tuple[str, str, datetime], ...]  # (id, state, created): which is current, and where
    closures: tuple[tuple[str, str], ...]  # (episode id, reason): ended by the program, or cancelled
    fetched: tuple[str, ...]  # categories with a fetch state
    items: tuple[tuple[str, bool], ...]  # (category, the client's own answer) of the items held
    queued: bool  # a read of the client's background is waiting


async def review_states(session: AsyncSession, fetch_kind: str) -> dict[str, ReviewState]:
    """The ReviewState of every client the review covers (see _review_scope), in seven statements whatever the
    number of clients; `fetch_kind`: the job kind that reads a client's background."""
    scope = select(_review_scope().subquery().c.client_id)
    return await _states(session, fetch_kind, lambda column: column.in_(scope))


async def review_state(session: AsyncSession, client_id: str, fetch_kind: str) -> ReviewState | None:
    """One client's ReviewState, whether or not the periodic review covers them (None: no such client)."""
    return (await _states(session, fetch_kind, lambda column: column == client_id)).get(client_id)


async def _states(
    session: AsyncSession, fetch_kind: str, within: Callable[[InstrumentedAttribute[str]], ColumnElement[bool]]
) -> dict[str, ReviewState]:
    rows: dict[str, dict[str, list[Any]]] = {}

    async def gather(field: str, query: Select[*tuple[Any, ...]]) -> None:
        for client_id, *values in (await session.execute(query)).all():
            rows.setdefault(client_id, {}).setdefault(field, []).append(tuple(values))

    sites = {i: site for i, site in await session.execute(select(Client.id, Client.site).where(within(Client.id)))}
    consent = ConsentDocument
    await gather(
        "consents",
        select(consent.client_id, consent.id, consent.version_id, consent.updated_at).where(within(consent.client_id)),
    )
    await gather(
        "episodes",
        select(Episode.client_id, Episode.id, Episode.state, Episode.created_at).where(within(Episode.client_id)),
    )
    await gather(
        "closures",
        select(Episode.client_id, EpisodeClosure.episode_id, EpisodeClosure.reason)
        .join(Episode, Episode.id == EpisodeClosure.episode_id)
        .where(within(Episode.client_id)),
    )
    await gather(
        "fetched", select(BackgroundFetch.client_id, BackgroundFetch.category).where(within(BackgroundFetch.client_id))
    )
    own = BackgroundItem.source.like("QuestionnaireResponse/%")
    await gather(
        "items",
        select(BackgroundItem.client_id, BackgroundItem.category, own)
        .where(within(BackgroundItem.client_id))
        .distinct(),
    )
    await gather(
        "queued",
        select(Job.subject_id).where(Job.kind == fetch_kind, Job.status == PENDING, within(Job.subject_id)).distinct(),
    )
    states = {}
    for client_id, site in sites.items():
        found = rows.get(client_id, {})
        states[client_id] = ReviewState(
            site=site,
            consents=tuple(sorted(found.get("consents", ()))),
            episodes=tuple(sorted(found.get("episodes", ()))),
            closures=tuple(sorted(found.get("closures", ()))),
            fetched=tuple(sorted(c for (c,) in found.get("fetched", ()))),
            items=tuple(sorted((c, bool(answer)) for c, answer in found.get("items", ()))),
            queued=bool(found.get("queued")),
        )
    return states


async def fetch_queued(session: AsyncSession, kind: str, client_id: str) -> bool:
    """Whether a fetch of the client's background is already waiting (one is enough: it reads everything)."""
    query = select(Job.id).where(Job.kind == kind, Job.subject_id == client_id, Job.status == PENDING)
    return (await session.execute(query.limit(1))).first() is not None
