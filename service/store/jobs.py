"""The one table of deferred work (`outbox`): writes to the EHR (contact, careteam) and reads from it (fetch,
patient, search, recover), each row written in the transaction of the change or notification it follows from.

Every statement that changes a claimed row is a single UPDATE guarded by the claim token, so a worker whose
lease ran out (and whose row another worker took) changes nothing, and SQLite never has to upgrade a read
transaction to a write one. Claims (store/claims.py) are one UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP
LOCKED) on PostgreSQL; SQLite runs the same UPDATE atomically, one writer at a time.

The table keeps the name `outbox` it has had since the first release: operators' queries, the Prometheus
metric names (peerway_outbox_*) and the migrations' history know it, and every row still is an outbox row in the
transactional-outbox sense.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    CursorResult,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    bindparam,
    case,
    delete,
    func,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from service.store.direct import DirectRead
from service.store.models import Base, UTCDateTime

PENDING, DONE, DEAD, DISCARDED = "pending", "done", "dead", "discarded"


class Job(Base):
    """Deferred work, carrying ids only: the worker reads current state (ours or the EHR's) when it runs.

    A worker claims a row with a lease (claimed_until) under a claim token (claimed_by) that it renews while it
    works; a worker that dies leaves the row claimable again when the lease ends. Intake work also names its
    channel, event number, focus (`Type/id` at the EHR) and the time a search starts from.
    """

    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_due", "status", "available_at"),
        # A claim's "no older job of this kind and subject pending": by the pending ones only, however many are done.
        Index("ix_outbox_subject_pending", "kind", "subject_id", "status", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32))
    # What the work is about: rows of one kind and subject are done one after the other, oldest first.
    subject_id: Mapped[str] = mapped_column(String(140))
    status: Mapped[str] = mapped_column(String(16))  # pending | done | dead | discarded
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    available_at: Mapped[datetime] = mapped_column(UTCDateTime())
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    done_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    first_failed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())  # the retry horizon counts from here
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_status: Mapped[int | None] = mapped_column(Integer)  # the EHR's HTTP status; None: unreachable
    outcome_json: Mapped[str | None] = mapped_column(Text)  # the EHR's OperationOutcome, as it answered
    # The site whose EHR the work goes to (None: a delivery queued before sites, whose subject is gone).
    site: Mapped[str | None] = mapped_column(String(64))
    # Intake work: the channel whose notification (or silence) it follows from, and what to read.
    channel_id: Mapped[str | None] = mapped_column(
        ForeignKey("subscription_channel.id", name="fk_outbox_channel"), index=True
    )
    event_number: Mapped[int | None] = mapped_column(BigInteger)
    focus: Mapped[str | None] = mapped_column(String(140))
    since: Mapped[datetime | None] = mapped_column(UTCDateTime())


def new_job(
    kind: str,
    subject_id: str,
    site: str,
    now: datetime,
    *,
    available_at: datetime | None = None,
    channel_id: str | None = None,
    event_number: int | None = None,
    focus: str | None = None,
    since: datetime | None = None,
) -> Job:
    """A row of work for the site, due at once (or at `available_at`); written in the caller's transaction."""
    return Job(
        kind=kind,
        subject_id=subject_id,
        site=site,
        status=PENDING,
        attempts=0,
        available_at=available_at or now,
        claimed_until=None,
        last_error=None,
        created_at=now,
        done_at=None,
        channel_id=channel_id,
        event_number=event_number,
        focus=focus,
        since=since,
    )


# --- the worker's statements -----------------------------------------------------------------------------------


def _rowcount(result: Any) -> int:
    return int(cast(CursorResult[Any], result).rowcount)


def _unclaimed(now: datetime) -> Any:
    return or_(Job.claimed_until.is_(None), Job.claimed_until < now)


async def any_due(engine: AsyncEngine, now: datetime, kinds: Collection[str]) -> bool:
    """Whether a row of these kinds is due and unleased: a read, so an idle worker's poll takes no write lock."""
    return (await due_among(engine, now, [kinds]))[0]


async def due_among(engine: AsyncEngine, now: datetime, groups: Sequence[Collection[str]]) -> list[bool]:
    """For each group of kinds, whether a row of them is due and unleased: one read for every group.

    A direct read (service/store/direct.py): a worker polls every outbox_poll_seconds, and through a session
    each poll cost about 2 ms of CPU (a checkout, four trips to aiosqlite's thread, the reset), as much as a
    tenth of a busy worker's at a 50 ms poll, and each of N worker processes pays it."""
    read = _due_read(tuple(tuple(sorted(kinds)) for kinds in groups))
    [row] = await read.rows(engine, {"now": _bound_time(engine.dialect, now)})
    return [bool(value) for value in row]


# The worker's statements below are Core statements on the table, each built once with bound parameters: as ORM
# statements (update(Job)) every execution went through the ORM's bulk-update path and generated a cache key
# over its values, about half the CPU of each statement in the drain profile; the rows they answer are plain.
_JOBS = cast(Table, Job.__table__)


@functools.cache
def _bound_processor(dialect: Dialect) -> Any:
    return _JOBS.c.available_at.type._cached_bind_processor(dialect)


def _bound_time(dialect: Dialect, value: datetime) -> Any:
    """A time as the driver takes it for the table's UTC columns (a direct read binds values as given)."""
    processor = _bound_processor(dialect)
    return processor(value) if processor is not None else value


@functools.cache
def _due_read(groups: tuple[tuple[str, ...], ...]) -> DirectRead:
    now: Any = bindparam("now")
    c = _JOBS.c
    return DirectRead(
        select(
            *(
                select(c.id)
                .where(
                    or_(*(c.kind == kind for kind in kinds)),  # no expanding IN: a direct read binds fixed values
                    c.status == PENDING,
                    c.available_at <= now,
                    or_(c.claimed_until.is_(None), c.claimed_until < now),
                )
                .exists()
                .label(f"due_{n}")
                for n, kinds in enumerate(groups)
            )
        )
    )


async def renew_lease(session: AsyncSession, token: str, lease_until: datetime) -> int:
    result = await session.execute(
        update(Job)
        .where(Job.claimed_by == token, Job.status == PENDING)
        .values(claimed_until=lease_until)
        .execution_options(synchronize_session=False)
    )
    return _rowcount(result)


async def release(session: AsyncSession, token: str, ids: Sequence[int] | None = None) -> int:
    """Give rows back unattempted (shutdown): claimable at once by any worker."""
    statement = update(Job).where(Job.claimed_by == token, Job.status == PENDING)
    if ids is not None:
        statement = statement.where(Job.id.in_(ids))
    result = await session.execute(
        statement.values(claimed_until=None, claimed_by=None).execution_options(synchronize_session=False)
    )
    return _rowcount(result)


@functools.cache
def _done_statement() -> Any:
    c = _JOBS.c
    now = bindparam("now", type_=UTCDateTime())
    return (
        update(_JOBS)
        .where(c.id.in_(bindparam("ids", expanding=True)), c.claimed_by == bindparam("token"), c.status == PENDING)
        .values(
            status=DONE,
            done_at=now,
            attempts=c.attempts + 1,
            last_attempt_at=now,
            claimed_until=None,
            claimed_by=None,
        )
        .returning(c.id)
    )


async def record_done(session: AsyncSession, ids: Sequence[int], token: str, now: datetime) -> list[int]:
    """Mark the rows done (those this claim still holds); answers their ids."""
    result = await session.execute(_done_statement(), {"ids": list(ids), "token": token, "now": now})
    return [int(i) for i in result.scalars().all()]


async def record_note(session: AsyncSession, job_id: int, note: str) -> None:
    """Keep what the worker had to resolve on the way (duplicates at the EHR) with the done row."""
    await session.execute(
        update(Job).where(Job.id == job_id).values(last_error=note).execution_options(synchronize_session=False)
    )


@dataclass(frozen=True)
class Failure:
    dead: bool
    available_at: datetime
    http_status: int | None
    error: str
    outcome_json: str | None


async def record_failure(session: AsyncSession, job_id: int, token: str, now: datetime, failure: Failure) -> bool:
    """Count the failed attempt: due again at `available_at`, or a dead letter. False: the claim was lost."""
    result = await session.execute(
        update(Job)
        .where(Job.id == job_id, Job.claimed_by == token, Job.status == PENDING)
        .values(
            status=DEAD if failure.dead else PENDING,
            attempts=Job.attempts + 1,
            available_at=failure.available_at,
            first_failed_at=func.coalesce(Job.first_failed_at, now),
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


# --- what use cases ask: intake work per channel, dead letters ---------------------------------------------------


async def has_pending_job(
    session: AsyncSession, channel_id: str, kind: str, now: datetime, *, running_too: bool = False
) -> bool:
    """A pending row of this kind for the channel that no worker is on yet, or (`running_too`) any pending row.
    One being worked on may have read its channel's state already: new work then needs a row of its own."""
    query = select(Job.id).where(Job.channel_id == channel_id, Job.kind == kind, Job.status == PENDING)
    if not running_too:
        query = query.where(_unclaimed(now))
    return (await session.execute(query.limit(1))).first() is not None


async def start_waiting_search_earlier(
    session: AsyncSession, channel_id: str, kind: str, since: datetime, now: datetime
) -> bool:
    """Make the channel's waiting search (pending, unclaimed) start at `since` if that is earlier. False: there
    is none. One UPDATE, so a worker claiming the row at the same moment either sees the new start or owns the
    row first (and this answers False)."""
    result = await session.execute(
        update(Job)
        .where(Job.channel_id == channel_id, Job.kind == kind, Job.status == PENDING, _unclaimed(now))
        .values(
            since=case((or_(Job.since.is_(None), Job.since > since), literal(since, UTCDateTime())), else_=Job.since)
        )
        .execution_options(synchronize_session=False)
    )
    return _rowcount(result) > 0


WORK_COUNTS = (
    select(Job.channel_id, Job.status, func.count())
    .where(or_(Job.status == PENDING, Job.status == DEAD), Job.channel_id.is_not(None))
    .group_by(Job.channel_id, Job.status)
)


async def work_counts(session: AsyncSession) -> dict[tuple[str | None, str], int]:
    """(channel id, status) -> number of intake rows (rows with a channel) waiting or dead. Done rows are not
    counted: reached by `ix_outbox_due`, this reads the rows still to be seen to, not every job a channel ever
    had (400 ms on every desk page with 600,000 done jobs, against 0.14 ms)."""
    result = await session.execute(WORK_COUNTS)
    return {(channel_id, status): count for channel_id, status, count in result.all()}


async def dead_letters(session: AsyncSession, site: str | None = None, limit: int = 500) -> Sequence[Job]:
    """Dead letters of every kind, oldest first: all of them, or one site's."""
    query = select(Job).where(Job.status == DEAD)
    if site is not None:
        query = query.where(Job.site == site)
    result = await session.execute(query.order_by(Job.id).limit(limit))
    return result.scalars().all()


async def job_for_update(session: AsyncSession, job_id: int) -> Job | None:
    return await session.get(Job, job_id, with_for_update=True)


async def purge_done(session: AsyncSession, before: datetime, limit: int) -> int:
    """Delete up to `limit` jobs done before `before`; answers how many. A job is due before it is done, so
    `ix_outbox_due` (status, available_at) finds them without reading the recent ones; in no particular order
    (ordered, each batch sorted every old job first: 110 ms a batch of 1,000 on SQLite instead of 9)."""
    oldest = select(Job.id).where(Job.status == DONE, Job.available_at < before, Job.done_at < before).limit(limit)
    result = await session.execute(
        delete(Job).where(Job.id.in_(oldest.scalar_subquery())).execution_options(synchronize_session=False)
    )
    return _rowcount(result)


# --- queue figures ---------------------------------------------------------------------------------------------


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
            Job.kind,
            Job.status,
            Job.site,
            func.count(),
            func.coalesce(func.sum(Job.attempts), 0),
        ).group_by(Job.kind, Job.status, Job.site)
    )
    rows: dict[tuple[str, str, str], int] = {}
    attempts: dict[tuple[str, str, str], int] = {}
    for kind, status, site, count, tries in grouped.all():
        rows[(kind, status, site or "")] = int(count)
        attempts[(kind, status, site or "")] = int(tries)
    pending = await session.execute(
        select(
            func.min(Job.created_at),
            func.count().filter(Job.attempts > 0),
            func.coalesce(func.max(Job.attempts), 0),
        ).where(Job.status == PENDING)
    )
    oldest, retrying, max_attempts = pending.one()
    if isinstance(oldest, str):  # in case a driver hands min() over the column back as text
        oldest = datetime.fromisoformat(oldest)
    if oldest is not None and oldest.tzinfo is None:
        oldest = oldest.replace(tzinfo=UTC)
    return QueueFigures(rows, attempts, oldest, int(retrying), int(max_attempts))


# --- being told when a job becomes claimable (PostgreSQL) -----------------------------------------------------

JOB_SIGNALS = "peerway_jobs"  # the channel migration 0017's trigger notifies, with the job's kind
CLOSE_SECONDS = 5.0  # a listening connection that does not close in this time is dropped
LISTEN_SECONDS = 10.0  # LISTEN itself, and each check that the connection still answers
CHECK_EVERY_SECONDS = 30.0  # a connection a NAT or a proxy dropped without a word is found out within this


def can_signal(engine: AsyncEngine) -> bool:
    """Whether other processes' jobs can wake this one (PostgreSQL's LISTEN); on SQLite only the poll finds them."""
    return engine.dialect.name == "postgresql"


@contextlib.asynccontextmanager
async def job_signals(engine: AsyncEngine, heard: Callable[[str], None]) -> AsyncIterator[asyncio.Event]:
    """Listen on a connection of its own (taken out of the pool, which may open another in its place): `heard`
    is called with the kind of each job that became claimable in any process, when its transaction commits. The
    event yielded is set if the connection is lost: the server ended it, or it stopped answering (checked every
    CHECK_EVERY_SECONDS, for a connection dropped on the way without either side being told)."""
    raw = await engine.raw_connection()
    driver: Any = raw.driver_connection
    raw.detach()
    lost = asyncio.Event()

    def notified(_connection: Any, _pid: int, _channel: str, payload: str) -> None:
        heard(payload)

    async def answering() -> None:
        while not lost.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(lost.wait(), CHECK_EVERY_SECONDS)
            if lost.is_set():
                return
            try:
                await asyncio.wait_for(driver.fetchval("SELECT 1"), LISTEN_SECONDS)
            except Exception:
                lost.set()

    checks: asyncio.Task[None] | None = None
    try:
        driver.add_termination_listener(lambda _connection: lost.set())
        await asyncio.wait_for(driver.add_listener(JOB_SIGNALS, notified), LISTEN_SECONDS)
        checks = asyncio.create_task(answering())
        yield lost
    finally:
        if checks is not None:
            checks.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await checks
        with contextlib.suppress(Exception):
            await asyncio.wait_for(driver.close(), CLOSE_SECONDS)
        if not driver.is_closed():
            driver.terminate()
