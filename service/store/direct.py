"""A hot read run on the driver's own connection in one call: for the statements a request runs on every read.

Through SQLAlchemy's asyncio adapters one SELECT costs several trips: on SQLite each of cursor, execute, fetchall
and close is a hand-over to aiosqlite's thread and back (about 100 us of CPU each on a busy machine); on
PostgreSQL the adapter opens a transaction (BEGIN) before the statement and rolls it back after, two more round
trips for a read that needs no transaction. Here the statement is compiled once per dialect and run with
aiosqlite's execute_fetchall (one hand-over) or asyncpg's fetch (one round trip, asyncpg's own prepared statement
cache); the columns' result processors still apply, so the rows hold what SQLAlchemy would have returned.

Failures look like SQLAlchemy's own: a driver error becomes the DBAPIError SQLAlchemy would raise (so a database
that cannot serve is still a 503, service/app/health.py), and a connection the error broke is invalidated.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import weakref
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, event, exc, insert
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.sql.selectable import SelectBase
from sqlalchemy.util import greenlet_spawn

from service.store.db import CLEAN_ON_RETURN

Processor = Callable[[Any], Any] | None


@dataclass(frozen=True)
class _Compiled:
    sql: str
    order: tuple[str, ...]  # the bound parameters' names, in the order the driver takes them
    fixed: Mapping[str, Any]  # values bound in the statement itself (literals)
    processors: tuple[Processor, ...]


class DirectRead:
    """A SELECT (or UNION) with named bound parameters, compiled on first use per dialect."""

    def __init__(self, statement: SelectBase) -> None:
        self.statement = statement
        self._compiled: dict[str, _Compiled] = {}

    def compiled(self, dialect: Dialect) -> _Compiled:
        found = self._compiled.get(dialect.name)
        if found is None:
            compiled = self.statement.compile(dialect=dialect)
            if "POSTCOMPILE" in compiled.string:
                raise ValueError("a direct read takes no expanding parameters")
            order = tuple(compiled.positiontup or ())
            processors = tuple(
                column.type._cached_result_processor(dialect, None) for column in self.statement.selected_columns
            )
            found = _Compiled(compiled.string, order, dict(compiled.params), processors)
            self._compiled[dialect.name] = found
        return found

    async def rows(self, engine: AsyncEngine, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """The statement's rows as tuples (each column converted as SQLAlchemy would), in one driver call."""
        compiled = self.compiled(engine.dialect)
        values = [params[name] if name in params else compiled.fixed[name] for name in compiled.order]
        here = _sqlite_here(engine, compiled.sql, values)
        fetched = here if here is not None else await self._fetch(engine, compiled, values)
        processors = compiled.processors
        return [tuple(p(v) if p is not None else v for p, v in zip(processors, row, strict=True)) for row in fetched]

    async def _fetch(self, engine: AsyncEngine, compiled: _Compiled, values: list[Any]) -> Sequence[Sequence[Any]]:
        async with _pooled(engine) as raw:
            driver: Any = raw.driver_connection
            try:
                if engine.dialect.name == "sqlite":
                    fetched: Sequence[Sequence[Any]] = await driver.execute_fetchall(compiled.sql, values)
                else:
                    fetched = await driver.fetch(compiled.sql, *values)
            except Exception as error:
                raise await driver_failure(engine, raw, compiled.sql, error) from error
        return fetched


class DirectInsert:
    """INSERTs of whole rows into one table, committed together, in one driver call: asyncpg's executemany (one
    implicit transaction, pipelined), or on SQLite one trip to aiosqlite's thread that runs BEGIN, the INSERTs and
    COMMIT (service/store/sqlite_driver.py), instead of SQLAlchemy's five or six calls
    (cursor, execute, close, commit...) or three round trips. The caller holds the process's SQLite write turn
    (service/store/db.py sqlite_writer)."""

    def __init__(self, table: Table) -> None:
        self.table = table
        self._compiled: dict[str, tuple[str, tuple[str, ...], tuple[Processor, ...]]] = {}

    def _for(self, dialect: Dialect) -> tuple[str, tuple[str, ...], tuple[Processor, ...]]:
        found = self._compiled.get(dialect.name)
        if found is None:
            names = tuple(c.name for c in self.table.columns)
            compiled = insert(self.table).compile(dialect=dialect, column_keys=list(names))
            order = tuple(compiled.positiontup or ())
            processors = tuple(self.table.c[name].type._cached_bind_processor(dialect) for name in order)
            found = self._compiled[dialect.name] = (compiled.string, order, processors)
        return found

    async def insert_many(self, engine: AsyncEngine, rows: Sequence[Mapping[str, Any]]) -> None:
        """Insert `rows` (every column given) and commit them, all or none; raises SQLAlchemy's errors."""
        sql, order, processors = self._for(engine.dialect)
        values = [
            tuple(p(row[name]) if p is not None else row[name] for name, p in zip(order, processors, strict=True))
            for row in rows
        ]
        async with _pooled(engine) as raw:
            driver: Any = raw.driver_connection
            try:
                if engine.dialect.name == "sqlite":
                    # One call for the whole transaction (SQLAlchemy's way would be one for each step).
                    await driver.run(sql, lambda conn: _sqlite_insert_all(conn, sql, values), here=False)
                    raw.info[CLEAN_ON_RETURN] = True  # committed: the pool need not roll back (one trip less)
                else:
                    await driver.executemany(sql, values)
            except Exception as error:
                raise await driver_failure(engine, raw, sql, error) from error


def _sqlite_insert_all(conn: sqlite3.Connection, sql: str, values: list[tuple[Any, ...]]) -> None:
    conn.execute("BEGIN")
    try:
        conn.executemany(sql, values)
        conn.commit()
    except BaseException:
        conn.rollback()
        raise


# SQLite: a read runs right here, on the event loop's thread, on a connection of its own. The statement takes
# about 20 us; handing it to aiosqlite's thread and back costs ten times that in CPU (two cross-thread wake-ups
# per trip). A WAL reader never waits for writers, and this connection waits for nothing at all (busy_timeout
# 0): when SQLite is busy (a checkpoint or recovery holding the file), the read goes the usual way, through
# aiosqlite's thread with the pool's busy timeout, so the event loop is never held waiting on a lock.
_sqlite_readers: weakref.WeakKeyDictionary[Any, dict[int, sqlite3.Connection]] = weakref.WeakKeyDictionary()


def _sqlite_here(engine: AsyncEngine, sql: str, values: list[Any]) -> list[Any] | None:
    """The rows read on this thread's own SQLite connection; None when that is not possible now."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:" or engine.url.query:
        return None
    readers = _sqlite_readers.get(engine.sync_engine)
    if readers is None:
        readers = _sqlite_readers[engine.sync_engine] = {}
        event.listen(engine.sync_engine, "engine_disposed", _close_readers)
    thread = threading.get_ident()
    reader = readers.get(thread)
    try:
        if reader is None:
            reader = sqlite3.connect(database, isolation_level=None)  # autocommit: each read its own snapshot
            reader.execute("PRAGMA busy_timeout=0")
            readers[thread] = reader
        return reader.execute(sql, values).fetchall()
    except sqlite3.Error:
        # Busy, or the file cannot be read from here: the pool's connection reads it (and reports a real failure).
        if reader is not None:
            readers.pop(thread, None)
            reader.close()
        return None


def _close_readers(engine: Any) -> None:
    for reader in _sqlite_readers.pop(engine, {}).values():
        with contextlib.suppress(sqlite3.Error):
            reader.close()


@contextlib.asynccontextmanager
async def _pooled(engine: AsyncEngine) -> AsyncIterator[PoolProxiedConnection]:
    """A connection of the engine's pool, returned to it (reset as the pool's events say) on leaving, even when
    the task is cancelled meanwhile (as AsyncConnection's exit does). The pool's own connection, not an
    AsyncConnection around a Connection around it: those cost two more hand-overs to SQLAlchemy's greenlet and
    a Connection object per read, for statements that never use them."""
    dbapi_error = engine.dialect.loaded_dbapi.Error
    try:
        raw = await engine.raw_connection()
    except dbapi_error as error:  # as Engine.connect() reports a database that cannot be opened
        broken = engine.dialect.is_disconnect(error, None, None)
        raise exc.DBAPIError.instance(
            None, None, error, dbapi_error, hide_parameters=True, connection_invalidated=broken, dialect=engine.dialect
        ) from error
    try:
        yield raw
    finally:
        await _to_completion(greenlet_spawn(raw.close))


async def _to_completion(cleanup: Coroutine[Any, Any, None]) -> None:
    """Run `cleanup` to its end even if the calling task is cancelled meanwhile; the cancellation is raised
    after it (SQLAlchemy's AsyncConnection does the same when it closes)."""
    task = asyncio.ensure_future(cleanup)
    cancelled: asyncio.CancelledError | None = None
    while True:
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError as error:
            if task.done():
                raise
            cancelled = error
        else:
            break
    if cancelled is not None:
        raise cancelled


async def driver_failure(engine: AsyncEngine, raw: Any, sql: str, error: Exception) -> BaseException:
    """The error SQLAlchemy would raise for a driver's `error` met on a pooled connection used directly (here and
    by store/claims.py); a connection it broke is invalidated, with every older one of the pool (as SQLAlchemy
    does on a disconnect), so that the next checkout gets a new one rather than the same dead one."""
    translated = _translated(raw.dbapi_connection, error)
    adapted: Any = translated
    broken = isinstance(error, ConnectionError) or (
        isinstance(adapted, engine.dialect.loaded_dbapi.Error)
        and engine.dialect.is_disconnect(adapted, raw.dbapi_connection, None)
    )
    if broken:
        pool = engine.sync_engine.pool
        await greenlet_spawn(pool._invalidate, raw, translated)
    return exc.DBAPIError.instance(
        sql,
        None,
        translated,
        engine.dialect.loaded_dbapi.Error,
        hide_parameters=True,
        connection_invalidated=broken,
        dialect=engine.dialect,
    )


def _translated(dbapi_connection: Any, error: Exception) -> BaseException:
    """The driver's error as the DBAPI error SQLAlchemy's adapter would raise (asyncpg's have their own types)."""
    try:
        dbapi_connection._handle_exception(error)
    except Exception as translated:
        return translated
    return error
