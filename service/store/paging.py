"""Keyset paging over (last updated, id): a page is the rows after (or before) a key, so inserts elsewhere in
the list neither repeat nor skip a row on the next page, and no OFFSET scan grows with the page number."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, func, literal, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

Key = tuple[datetime, str]


@dataclass(frozen=True)
class Keyset:
    """Which page: `limit` rows following `after` (or preceding `before`) in (time, id) order."""

    limit: int
    descending: bool = False
    after: Key | None = None
    before: Key | None = None


@dataclass(frozen=True)
class Page:
    rows: list[Any]
    has_next: bool
    has_previous: bool
    first: Key | None = None  # the keys a previous/next cursor starts from
    last: Key | None = None
    total: int | None = None  # every match, when asked for (or known for free: one page holds them all)


def _beyond(time: InstrumentedAttribute[Any], ident: InstrumentedAttribute[Any], key: Key, later: bool) -> Any:
    """Rows after (or before) the key in (time, id) order, as a row-value comparison: PostgreSQL and SQLite
    both answer it from an index on the time as a range (an OR of the two parts scans from the list's start)."""
    moment, id_ = key
    pair = tuple_(time, ident)
    bound = tuple_(literal(moment, time.type), literal(id_, ident.type))
    return pair > bound if later else pair < bound


def _up_to(time: InstrumentedAttribute[Any], ident: InstrumentedAttribute[Any], key: Key, later: bool) -> Any:
    """The complement of _beyond: the key's row and those on the other side of it."""
    pair = tuple_(time, ident)
    bound = tuple_(literal(key[0], time.type), literal(key[1], ident.type))
    return pair <= bound if later else pair >= bound


async def page(
    session: AsyncSession,
    query: Select[Any],
    time: InstrumentedAttribute[Any],
    ident: InstrumentedAttribute[Any],
    keyset: Keyset,
    *,
    count_all: bool = False,
    rows_wanted: bool = True,
) -> Page:
    """One page of `query`'s rows (a single entity) in (time, id) order, whether pages lie either side, and the
    total when `count_all` (without `rows_wanted`, the total alone)."""
    if not rows_wanted:
        return Page([], False, False, total=await count(session, query))
    found = await _page(session, query, time, ident, keyset)
    if found.rows:
        first, last = found.rows[0], found.rows[-1]
        keys = {"first": (getattr(first, time.key), getattr(first, ident.key))}
        keys["last"] = (getattr(last, time.key), getattr(last, ident.key))
    else:
        keys = {}
    if count_all:
        total: int | None = await count(session, query)
    elif not (found.has_next or found.has_previous or keyset.after or keyset.before):
        total = len(found.rows)  # the whole result is on this page
    else:
        total = None
    return Page(found.rows, found.has_next, found.has_previous, total=total, **keys)


async def _page(
    session: AsyncSession,
    query: Select[Any],
    time: InstrumentedAttribute[Any],
    ident: InstrumentedAttribute[Any],
    keyset: Keyset,
) -> Page:
    backwards = keyset.before is not None
    anchor = keyset.before if backwards else keyset.after
    # In the page's reading direction, "later" rows follow; descending order flips what follows means.
    forward_is_later = not keyset.descending
    scan_later = forward_is_later != backwards
    scanned = query
    if anchor is not None:
        scanned = scanned.where(_beyond(time, ident, anchor, scan_later))
    order = (time.asc(), ident.asc()) if scan_later else (time.desc(), ident.desc())
    rows = list((await session.execute(scanned.order_by(*order).limit(keyset.limit + 1))).scalars().all())
    more = len(rows) > keyset.limit
    rows = rows[: keyset.limit]
    # The anchor row itself lies on the other side (it closed the page the cursor came from).
    other_side = anchor is not None and await _exists(session, query.where(_up_to(time, ident, anchor, scan_later)))
    if backwards:
        rows.reverse()
        return Page(rows, has_next=other_side, has_previous=more)
    return Page(rows, has_next=more, has_previous=other_side)


async def _exists(session: AsyncSession, query: Select[Any]) -> bool:
    return (await session.execute(query.limit(1))).first() is not None


async def count(session: AsyncSession, query: Select[Any]) -> int:
    """How many rows `query` matches (asked for only with _total=accurate or _summary=count)."""
    return int((await session.execute(select(func.count()).select_from(query.subquery()))).scalar_one())
