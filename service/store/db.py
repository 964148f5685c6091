"""Engine and session factory. SQLite (embedded default) and PostgreSQL (production) share one schema.

The engine never writes what it stores into a log or an exception: statement parameters are hidden from
exception text (`hide_parameters`), and SQLAlchemy's and aiosqlite's own loggers, which print parameters and
result rows at INFO and DEBUG (a Patient's name, an MRN), are held at WARNING whatever the root level is.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import event, exc
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import PoolResetState
from sqlalchemy.util import await_

from service.store import sqlite_driver

# The loggers that would print statement parameters or rows (aiosqlite logs each call with its arguments).
CHATTY_LOGGERS = ("sqlalchemy.engine", "sqlalchemy.pool", "sqlalchemy.orm", "aiosqlite")
# PostgreSQL SQLSTATEs that mean "this server cannot serve now": the classes connection exception, insufficient
# resources (too many connections, disk full) and operator intervention (shutdown, statement timeout), and
# lock_not_available (a lock held past lock_timeout, as SQLite's "database is locked" past its busy timeout).
OUTAGE_SQLSTATES = ("08", "53", "57", "55P03")
# Connections kept open between requests, and never more: a checkout past them waits (asynchronously, up to the
# pool timeout of 30 s, then a 503) for one to come back. Past its size SQLAlchemy's pool opened overflow
# connections, each for one checkout and closed after it: on SQLite a new file handle, aiosqlite thread and three
# PRAGMAs, on PostgreSQL a new session (TCP, authentication, a backend process). Under a burst that is a collapse,
# not a slowdown: each new session costs more CPU than the read it serves, so the queue grows and more are opened.
# Summary reads offered at 1,500/s (32 connections) on PostgreSQL were served at 158-245/s with 2.4 ms of server
# CPU each, against 510-680/s at 1.0-1.3 ms with a fixed pool of 20 (bench/intake_bench.py, same machine, three runs
# each). No request or job holds two pooled connections at once, so waiting cannot deadlock: on a pool of one
# connection the suite failed only the three tests that hold two on purpose (races, a nested transaction).
# PostgreSQL's connections count against max_connections (100 by default): API processes and workers x
# POSTGRES_POOL_SIZE must stay under it (docs/deployment.md).
SQLITE_POOL_SIZE = 20
POSTGRES_POOL_SIZE = 20
# A pooled PostgreSQL connection idle this long is pinged before it is handed out (_ping_when_idle).
PING_AFTER_IDLE_SECONDS = 1.0
_IDLE_SINCE = "peerway_idle_since"
# Set in a pooled connection's info by a user that ended its transaction on the driver itself (no reset needed).
CLEAN_ON_RETURN = "peerway_clean_on_return"


def create_engine(database_url: str, *, ping_after_idle_seconds: float = PING_AFTER_IDLE_SECONDS) -> AsyncEngine:
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        # An in-memory database has one connection (SQLAlchemy's StaticPool), which takes no pool size.
        in_memory = not url.database or url.database == ":memory:"
        engine = create_async_engine(
            url,
            connect_args={"timeout": 30},
            hide_parameters=True,
            pool_reset_on_return=None,  # _rollback_on_return does it, unless the connection says it is clean
            **({} if in_memory else {"pool_size": SQLITE_POOL_SIZE, "max_overflow": 0}),
        )
        event.listen(engine.sync_engine, "reset", _rollback_on_return)

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

    else:
        # A server that does not answer fails a request in 10 s rather than asyncpg's default 60 s. Last in, first
        # out: once a burst has grown the pool, a first-in-first-out pool hands every connection round in turn, so
        # at a few reads a second each sits idle past PING_AFTER_IDLE_SECONDS and every checkout (two per summary
        # read) pays a ping round trip; LIFO reuses the connection returned last and leaves the surplus idle (pinged
        # when next needed).
        engine = create_async_engine(
            url,
            hide_parameters=True,
            connect_args={"timeout": 10},
            pool_size=POSTGRES_POOL_SIZE,
            max_overflow=0,
            pool_use_lifo=True,
        )
        event.listen(engine.sync_engine, "checkin", _idle_from_now)
        event.listen(engine.sync_engine, "checkout", partial(_ping_when_idle, ping_after_idle_seconds))
    event.listen(engine.sync_engine, "do_connect", _connect)
    return engine


def _rollback_on_return(dbapi_connection: Any, record: Any, state: PoolResetState) -> None:
    """What the pool's rollback-on-return does, except for a connection whose last user committed or rolled back
    on the driver itself and said so (CLEAN_ON_RETURN: service/store/direct.py): on SQLite a rollback is one more
    trip to aiosqlite's thread, which cost as much as the audit batch's whole transaction."""
    clean = record.info.pop(CLEAN_ON_RETURN, False)
    if not state.asyncio_safe or state.transaction_was_reset or clean:
        return
    dbapi_connection.rollback()


def _idle_from_now(_dbapi_connection: Any, record: Any) -> None:
    record.info[_IDLE_SINCE] = time.monotonic()


def _ping_when_idle(idle_seconds: float, dbapi_connection: Any, record: Any, _proxy: Any) -> None:
    """A connection that sat idle in the pool is pinged before use (the server may have closed it since: a
    restart, an idle timeout); one used moments ago is not. SQLAlchemy's pool_pre_ping pinged on every checkout,
    and its ping is three round trips on asyncpg (BEGIN, the ping, ROLLBACK): with two checkouts per summary read
    that was about a third of its CPU. Here a ping is one round trip, outside a transaction. A connection that
    died within the idle window fails its statement as a disconnect: SQLAlchemy then replaces it and every older
    connection of the pool, and that request is a 503 (service/app/health.py)."""
    since = record.info.get(_IDLE_SINCE)
    if since is None or time.monotonic() - since < idle_seconds:
        return
    try:
        await_(dbapi_connection.driver_connection.fetchrow(";"))
    except Exception as error:  # the pool closes it and checks out another (or opens a new one)
        raise exc.DisconnectionError("the connection did not answer its ping") from error


def _connect(dialect: Dialect, _record: Any, cargs: Any, cparams: Any) -> Any:
    """Connect as SQLAlchemy would, but report a server that cannot be reached (refused, reset, timed out,
    shutting down) as SQLAlchemy's OperationalError, as SQLite's failures already are: asyncpg raises the
    socket's own OSError there, which would otherwise look like any other bug. SQLite's connection is aiosqlite's
    with one trip to its thread per statement (service/store/sqlite_driver.py)."""
    if dialect.driver == "aiosqlite":
        cparams = {**cparams, "async_creator_fn": sqlite_driver.connect}
    try:
        return dialect.connect(*cargs, **cparams)
    except (exc.SQLAlchemyError, dialect.loaded_dbapi.Error):
        raise
    except Exception as error:
        raise exc.OperationalError(None, None, error, connection_invalidated=True) from error


def is_outage(error: BaseException) -> bool:
    """Whether `error` says the database cannot serve now (unreachable, dropped, locked past the busy timeout,
    out of connections, shutting down), as opposed to refusing a statement (integrity, data, programming)."""
    if isinstance(error, exc.OperationalError | exc.TimeoutError | exc.DisconnectionError):
        return True
    if isinstance(error, exc.DBAPIError):
        sqlstate = getattr(error.orig, "sqlstate", None) or getattr(error.orig, "pgcode", None)
        return error.connection_invalidated or (isinstance(sqlstate, str) and sqlstate.startswith(OUTAGE_SQLSTATES))
    # A connection dropped mid-statement can surface as the socket's error itself.
    return isinstance(error, ConnectionError)


def is_postgres(engine: AsyncEngine) -> bool:
    return engine.dialect.name == "postgresql"


SessionFactory = async_sessionmaker[AsyncSession]


def session_factory(engine: AsyncEngine) -> SessionFactory:
    return async_sessionmaker(engine, expire_on_commit=False)


def engine_of(sessions: SessionFactory) -> AsyncEngine:
    """The engine a session factory binds (for reads that need no session: service/store/direct.py)."""
    engine = sessions.kw.get("bind")
    if not isinstance(engine, AsyncEngine):
        raise TypeError("the session factory is not bound to an AsyncEngine")
    return engine


# SQLite lets one connection write at a time; the others wait in its busy handler, which sleeps and retries with
# growing pauses (up to 100 ms each), so under concurrent writes a request could wait seconds for a lock that was
# free most of that time. Writing transactions of one process queue on an asyncio lock instead and start the
# moment the previous one commits. Other processes (a `peerway worker`) still meet SQLite's own lock.
_sqlite_writers: weakref.WeakKeyDictionary[Any, dict[asyncio.AbstractEventLoop, asyncio.Lock]] = (
    weakref.WeakKeyDictionary()
)
_writing: ContextVar[bool] = ContextVar("peerway_sqlite_writing", default=False)


@asynccontextmanager
async def sqlite_writer(sessions: SessionFactory) -> AsyncIterator[None]:
    """Hold this process's SQLite write turn for a writing transaction (nothing on PostgreSQL). A transaction
    opened while the task already holds the turn (nested use cases) goes on without waiting for itself."""
    engine = sessions.kw.get("bind")
    if not isinstance(engine, AsyncEngine) or engine.dialect.name != "sqlite" or _writing.get():
        yield
        return
    locks = _sqlite_writers.setdefault(engine.sync_engine, {})
    lock = locks.setdefault(asyncio.get_running_loop(), asyncio.Lock())
    async with lock:
        token = _writing.set(True)
        try:
            yield
        finally:
            _writing.reset(token)


@asynccontextmanager
async def transaction(sessions: SessionFactory) -> AsyncIterator[AsyncSession]:
    """One unit of work: commits when the block ends normally, rolls back on any exception."""
    async with sqlite_writer(sessions), sessions() as session, session.begin():
        yield session
