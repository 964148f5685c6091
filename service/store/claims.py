"""The claim: how a worker leases a batch of due rows of the job table (store/jobs.py) in one trip to the driver.

The claim runs at every poll that finds work, so it is the worker's hottest statement. It is built once per lane
(its fixed kinds) and dialect flavour, compiled once per dialect with SQLAlchemy's bind and result processors, and
run on the driver's own connection inside the session's transaction: aiosqlite's execute_fetchall or asyncpg's
fetch, one trip, where the session took four trips to aiosqlite's thread (cursor, execute, fetchall, close) or
BEGIN, the claim and COMMIT on PostgreSQL. A driver error is raised as the error SQLAlchemy would have raised, so
callers (and an outage's 503) see no difference. The rest of the table's operations stay in store/jobs.py.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Integer, Table, bindparam, exists, or_, select, update
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncSession

from service.store.direct import driver_failure
from service.store.jobs import PENDING, Job
from service.store.models import UTCDateTime

_JOBS = cast(Table, Job.__table__)


@dataclass(frozen=True)
class Claimed:
    """A claimed row, as its handler needs it."""

    id: int
    kind: str
    subject_id: str
    site: str | None
    attempts: int
    first_failed_at: datetime | None
    channel_id: str | None = None
    event_number: int | None = None
    focus: str | None = None
    since: datetime | None = None


@functools.cache
def _claim_statement(skip_locked: bool, kinds: tuple[str, ...]) -> Any:
    """The claim, built once per dialect flavour and lane (bound: now, lease_until, token, limit): building its two
    aliases of the table costs more CPU than running it, and the lane's kinds are fixed values (an expanding IN
    is rendered anew on every execution)."""
    row = _JOBS.alias("candidate")
    older = _JOBS.alias("older")
    now = bindparam("now", type_=UTCDateTime())
    candidates = (
        select(row.c.id)
        .where(
            or_(*(row.c.kind == kind for kind in kinds)),
            row.c.status == PENDING,
            row.c.available_at <= now,
            or_(row.c.claimed_until.is_(None), row.c.claimed_until < now),
            ~exists().where(
                older.c.kind == row.c.kind,
                older.c.subject_id == row.c.subject_id,
                older.c.status == PENDING,
                older.c.id < row.c.id,
            ),
        )
        .order_by(row.c.id)
        .limit(bindparam("limit", type_=Integer()))
    )
    if skip_locked:
        candidates = candidates.with_for_update(skip_locked=True, of=row)
    c = _JOBS.c
    return (
        update(_JOBS)
        .where(c.id.in_(candidates.scalar_subquery()))
        .values(claimed_until=bindparam("lease_until", type_=UTCDateTime()), claimed_by=bindparam("token"))
        .returning(
            c.id,
            c.kind,
            c.subject_id,
            c.site,
            c.attempts,
            c.first_failed_at,
            c.channel_id,
            c.event_number,
            c.focus,
            c.since,
        )
    )


async def claim(
    session: AsyncSession,
    token: str,
    now: datetime,
    lease_until: datetime,
    limit: int,
    kinds: Collection[str],
    *,
    skip_locked: bool,
) -> list[Claimed]:
    """Lease up to `limit` due rows of these kinds to the claim `token`, oldest first.

    A row waits while an older pending row of its kind about the same subject exists, so two workers never work
    on one resource (a CareTeam, an Encounter) at once and an older state never lands after a newer one.

    On PostgreSQL the claim commits on its own (one statement, outside the session's transaction): statements
    added after it in the same session are not atomic with it. A claim whose caller then fails only delays those
    jobs by one lease; nothing is lost.
    """
    statement = _claim_statement(skip_locked, tuple(sorted(kinds)))
    connection = await session.connection()
    dialect = connection.dialect
    sql, order, fixed, binders, processors = _compiled_claim(statement, dialect)
    given = fixed | {"now": now, "lease_until": lease_until, "token": token, "limit": limit}
    values = [b(given[name]) if b is not None else given[name] for name, b in zip(order, binders, strict=True)]
    raw = await connection.get_raw_connection()
    driver: Any = raw.driver_connection
    # One trip to the driver, in the session's transaction (SQLite: begun by the UPDATE, committed by the caller;
    # PostgreSQL: the one statement is its own transaction). Through the session the claim was four trips to
    # aiosqlite's thread and the commit (cursor, execute, fetchall, close), or BEGIN, the claim and COMMIT on
    # PostgreSQL: some 8 % of a delivering worker's CPU.
    try:
        if dialect.name == "sqlite":
            fetched = await driver.execute_fetchall(sql, values)
        else:
            fetched = await driver.fetch(sql, *values)
    except Exception as error:  # as SQLAlchemy would raise it, a broken connection invalidated (direct.py)
        raise await driver_failure(connection.engine, raw, sql, error) from error
    rows = [tuple(p(v) if p is not None else v for p, v in zip(processors, row, strict=True)) for row in fetched]
    return sorted((Claimed(*r) for r in rows), key=lambda c: c.id)


_Processor = Callable[[Any], Any] | None
_Compiled = tuple[str, tuple[str, ...], dict[str, Any], tuple[_Processor, ...], tuple[_Processor, ...]]
_claims_compiled: dict[tuple[int, str], _Compiled] = {}


def _compiled_claim(statement: Any, dialect: Dialect) -> _Compiled:
    """The claim's SQL for the driver, its parameters' names in order, the values fixed in it (its lane's kinds, the
    status), the parameters' bind processors and its returned columns' result processors (what SQLAlchemy would
    apply), compiled once per statement and dialect."""
    key = (id(statement), dialect.name)  # statements are built once (functools.cache): their id is stable
    found = _claims_compiled.get(key)
    if found is None:
        compiled = statement.compile(dialect=dialect)
        order = tuple(compiled.positiontup or ())
        if "POSTCOMPILE" in compiled.string:
            raise ValueError("the claim takes no expanding parameters")
        binders = tuple(compiled.binds[name].type._cached_bind_processor(dialect) for name in order)
        processors = tuple(c.type._cached_result_processor(dialect, None) for c in statement._returning)
        fixed = {name: value for name, value in compiled.params.items() if value is not None}
        found = _claims_compiled[key] = (compiled.string, order, fixed, binders, processors)
    return found
