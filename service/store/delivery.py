"""Delivery to the EHR: the CareTeam's members (from the assignment history), and the outbox's claim, lease and
result statements.

Every statement that changes an outbox row is a single UPDATE guarded by the claim token, so a worker whose
lease ran out (and whose row another worker took) changes nothing, and SQLite never has to upgrade a read
transaction to a write one. Claims are one UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED) on
PostgreSQL; SQLite runs the same UPDATE atomically, one writer at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import CursorResult, exists, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from service.store.matching import Assignment
from service.store.models import Client, Contact, Episode, OutboxItem, PeerSupporter

PENDING, DONE, DEAD, DISCARDED = "pending", "done", "dead", "discarded"


async def careteam_members(session: AsyncSession, episode_id: str) -> Sequence[Assignment]:
    """Every period of a peer with the episode (its assignment history), oldest first: the CareTeam's members."""
    result = await session.execute(
        select(Assignment).where(Assignment.episode_id == episode_id).order_by(Assignment.started_at, Assignment.id)
    )
    return result.scalars().all()


ContactState = tuple[Contact, Episode, PeerSupporter, Client]


async def contact_states(session: AsyncSession, contact_ids: Sequence[str]) -> Sequence[ContactState]:
    """Each contact with its episode, peer and client (what its Encounter is built from), in one query."""
    result = await session.execute(
        select(Contact, Episode, PeerSupporter, Client)
        .join(Episode, Episode.id == Contact.episode_id)
        .join(PeerSupporter, PeerSupporter.id == Contact.peer_id)
        .join(Client, Client.id == Episode.client_id)
        .where(Contact.id.in_(contact_ids))
    )
    return [(c, e, p, cl) for c, e, p, cl in result.all()]


def new_outbox_item(kind: str, subject_id: str, site: str, now: datetime) -> OutboxItem:
    """A row to deliver, for the site whose client it is about (written in the transaction of the change)."""
    return OutboxItem(
        kind=kind,
        subject_id=subject_id,
        site=site,
        status=PENDING,
        attempts=0,
        available_at=now,
        claimed_until=None,
        last_error=None,
        created_at=now,
        done_at=None,
    )


# --- the worker's statements -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Claimed:
    id: int
    kind: str
    subject_id: str
    attempts: int
    first_failed_at: datetime | None


def _rowcount(result: Any) -> int:
    return int(cast(CursorResult[Any], result).rowcount)


async def claim(
    session: AsyncSession, token: str, now: datetime, lease_until: datetime, limit: int, *, skip_locked: bool
) -> list[Claimed]:
    """Lease up to `limit` due rows to the claim `token`, oldest first.

    A row waits while an older pending row about the same subject exists, so two workers never write one
    resource (a CareTeam) at once and an older state never lands after a newer one.
    """
    row = aliased(OutboxItem, name="candidate")
    older = aliased(OutboxItem, name="older")
    candidates = (
        select(row.id)
        .where(
            row.status == PENDING,
            row.available_at <= now,
            or_(row.claimed_until.is_(None), row.claimed_until < now),
            ~exists().where(
                older.kind == row.kind,
                older.subject_id == row.subject_id,
                older.status == PENDING,
                older.id < row.id,
            ),
        )
        .order_by(row.id)
        .limit(limit)
    )
    if skip_locked:
        candidates = candidates.with_for_update(skip_locked=True, of=row)
    statement = (
        update(OutboxItem)
        .where(OutboxItem.id.in_(candidates.scalar_subquery()))
        .values(claimed_until=lease_until, claimed_by=token)
        .returning(
            OutboxItem.id, OutboxItem.kind, OutboxItem.subject_id, OutboxItem.attempts, OutboxItem.first_failed_at
        )
        .execution_options(synchronize_session=False)
    )
    rows = (await session.execute(statement)).all()
    return sorted((Claimed(*r) for r in rows), key=lambda c: c.id)


async def renew_lease(session: AsyncSession, token: str, lease_until: datetime) -> int:
    result = await session.execute(
        update(OutboxItem)
        .where(OutboxItem.claimed_by == token, OutboxItem.status == PENDING)
        .values(claimed_until=lease_until)
        .execution_options(synchronize_session=False)
    )
    return _rowcount(result)


async def release(session: AsyncSession, token: str, ids: Sequence[int] | None = None) -> int:
    """Give rows back unattempted (shutdown): claimable at once by any worker."""
    statement = update(OutboxItem).where(OutboxItem.claimed_by == token, OutboxItem.status == PENDING)
    if ids is not None:
        statement = statement.where(OutboxItem.id.in_(ids))
    result = await session.execute(
        statement.values(claimed_until=None, claimed_by=None).execution_options(synchronize_session=False)
    )
    return _rowcount(result)


async def record_delivered(session: AsyncSession, ids: Sequence[int], token: str, now: datetime) -> list[int]:
    """Mark the rows done (those this claim still holds); answers their ids."""
    result = await session.execute(
        update(OutboxItem)
        .where(OutboxItem.id.in_(ids), OutboxItem.claimed_by == token, OutboxItem.status == PENDING)
        .values(
            status=DONE,
            done_at=now,
            attempts=OutboxItem.attempts + 1,
            last_attempt_at=now,
            claimed_until=None,
            claimed_by=None,
        )
        .returning(OutboxItem.id)
        .execution_options(synchronize_session=False)
    )
    return [int(i) for i in result.scalars().all()]


async def mark_contacts_delivered(session: AsyncSession, contact_ids: Sequence[str], now: datetime) -> None:
    if not contact_ids:
        return
    await session.execute(
        update(Contact)
        .where(Contact.id.in_(contact_ids), Contact.delivered_at.is_(None))
        .values(delivered_at=now)
        .execution_options(synchronize_session=False)
    )


async def record_note(session: AsyncSession, item_id: int, note: str) -> None:
    """Keep what the worker had to resolve on the way (duplicates at the EHR) with the delivered row."""
    await session.execute(
        update(OutboxItem)
        .where(OutboxItem.id == item_id)
        .values(last_error=note)
        .execution_options(synchronize_session=False)
    )


@dataclass(frozen=True)
class Failure:
    dead: bool
    available_at: datetime
    http_status: int | None
    error: str
    outcome_json: str | None


async def record_failure(session: AsyncSession, item: Claimed, token: str, now: datetime, failure: Failure) -> bool:
    result = await session.execute(
        update(OutboxItem)
        .where(OutboxItem.id == item.id, OutboxItem.claimed_by == token, OutboxItem.status == PENDING)
        .values(
            status=DEAD if failure.dead else PENDING,
            attempts=OutboxItem.attempts + 1,
            available_at=failure.available_at,
            first_failed_at=func.coalesce(OutboxItem.first_failed_at, now),
            last_attempt_at=now,
            last_status=failure.http_status,
            last_error=failure.error,
            outcome_json=failure.outcome_json,
            claimed_until=None,
            claimed_by=None,
        )
        .execution_options(synchronize_session=False)
    )
    return _rowcount(result) == 1


# --- operators: dead letters and queue figures -----------------------------------------------------------------


async def dead_letters(session: AsyncSession, site: str | None = None, limit: int = 500) -> Sequence[OutboxItem]:
    """Dead letters, oldest first: all of them, or those of one site's clients."""
    query = select(OutboxItem).where(OutboxItem.status == DEAD)
    if site is not None:
        query = query.where(OutboxItem.site == site)
    result = await session.execute(query.order_by(OutboxItem.id).limit(limit))
    return result.scalars().all()


@dataclass(frozen=True)
class QueueFigures:
    rows: dict[tuple[str, str, str], int]  # (kind, status, site) -> rows
    attempts: dict[tuple[str, str, str], int]  # (kind, status, site) -> attempts made over those rows
    oldest_pending_created_at: datetime | None
    retrying: int  # pending rows that have failed at least once
    max_pending_attempts: int


async def queue_figures(session: AsyncSession) -> QueueFigures:
    """Counts per kind, status and site (a row queued before sites, whose subject is gone, under site "")."""
    grouped = await session.execute(
        select(
            OutboxItem.kind,
            OutboxItem.status,
            OutboxItem.site,
            func.count(),
            func.coalesce(func.sum(OutboxItem.attempts), 0),
        ).group_by(OutboxItem.kind, OutboxItem.status, OutboxItem.site)
    )
    rows: dict[tuple[str, str, str], int] = {}
    attempts: dict[tuple[str, str, str], int] = {}
    for kind, status, site, count, tries in grouped.all():
        rows[(kind, status, site or "")] = int(count)
        attempts[(kind, status, site or "")] = int(tries)
    pending = await session.execute(
        select(
            func.min(OutboxItem.created_at),
            func.count().filter(OutboxItem.attempts > 0),
            func.coalesce(func.max(OutboxItem.attempts), 0),
        ).where(OutboxItem.status == PENDING)
    )
    oldest, retrying, max_attempts = pending.one()
    if isinstance(oldest, str):  # in case a driver hands min() over the column back as text
        oldest = datetime.fromisoformat(oldest)
    if oldest is not None and oldest.tzinfo is None:
        oldest = oldest.replace(tzinfo=UTC)
    return QueueFigures(rows, attempts, oldest, int(retrying), int(max_attempts))
