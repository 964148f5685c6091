"""aiosqlite, with quick statements run on the event loop's own thread and one trip to aiosqlite's thread for the
others.

aiosqlite runs every sqlite3 call on a thread of its own, one call per trip: SQLAlchemy's statement is a trip to
make the cursor, one to execute, one to fetch the rows and one to close it. Each trip is a future, a queue, a
wake-up of the event loop through its self-pipe and two thread switches, and they cost more than SQLite's own
work: a Da Vinci message's dozen statements take some 30 us each in SQLite, and about as much CPU again in every
trip. So here:

- A statement that has been quick (its recent worst time under QUICK_SECONDS, a maximum that decays by 5 % a
  run, per SQL text) runs right here, on the event loop's thread: cursor, execute, rows and close in one call.
  One not seen yet, one that has been slow lately (a report over many rows, one client's long history), and every
  COMMIT (a WAL sync, now and then a checkpoint) go to aiosqlite's thread as one trip, so that a long statement
  does not hold the event loop.
- Nothing runs here while anything of the same connection is on aiosqlite's thread or queued for it: a call
  whose awaiting task was cancelled still runs there to its end, and the connection is used by one thread at a
  time (calls through the thread keep their order).
- Nothing waits for a lock on the event loop. The connection itself never waits (SQLite's busy timeout 0); a
  statement that meets a lock held by another connection (another process writing: a `peerway worker`) is run
  again on aiosqlite's thread, which waits for the lock up to the connection's busy timeout (`timeout=` of
  connect, or a `PRAGMA busy_timeout=N` statement, which sets it here rather than on SQLite's connection). A
  statement that got SQLITE_BUSY changed nothing (an executemany whose earlier rows changed something is not run
  again: the error is raised). Within one process writers already queue on an asyncio lock (service/store/db.py
  sqlite_writer), so they do not meet SQLite's.

SQLAlchemy fetches every row of a statement at once anyway (no server-side cursors here), so nothing it sees
changes; transactions, errors and connection life are aiosqlite's as before.
"""

from __future__ import annotations

import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import aiosqlite
from aiosqlite.context import contextmanager

Described = tuple[Any, int, int | None, list[Any]]


T = TypeVar("T")

QUICK_SECONDS = 0.001  # a statement whose recent worst time is under this runs on the event loop's thread
DECAY = 0.95  # each run, the worst time remembered shrinks to this share of itself (unless the run took longer)
_SQLITE_BUSY = 5  # the primary result code of "database is locked" (extended codes add bits above the low byte)
_BUSY_TIMEOUT = re.compile(r"\s*PRAGMA\s+busy_timeout\s*=\s*(\d+)\s*;?\s*", re.IGNORECASE)
_ROLLBACK = "-- rollback"  # its key among the statements' timings (a commit always goes to aiosqlite's thread)


def connect(database: str, *, timeout: float = 5.0, **kwargs: Any) -> aiosqlite.Connection:
    """What aiosqlite.connect answers (SQLAlchemy awaits it), as a OneTripConnection that waits up to `timeout`
    seconds for a lock, on aiosqlite's thread only."""

    def connector() -> sqlite3.Connection:
        # Used from the event loop's thread and from aiosqlite's, never both at once (OneTripConnection.run).
        made: sqlite3.Connection = sqlite3.connect(database, timeout=0, **(kwargs | {"check_same_thread": False}))
        return made

    connection = OneTripConnection(connector, 64)
    connection.busy_ms = round(timeout * 1000)
    connection._thread.daemon = True  # as SQLAlchemy's aiosqlite dialect sets it: never hold the process open
    return connection


class _Pace:
    """Each statement's recent worst time (by SQL text): which ones are quick enough for the event loop."""

    LIMIT = 4096  # distinct statements remembered (past it, all are forgotten and timed again)

    def __init__(self) -> None:
        self._seconds: dict[str, float] = {}

    def quick(self, key: str) -> bool:
        seconds = self._seconds.get(key)
        return seconds is not None and seconds < QUICK_SECONDS

    def note(self, key: str, seconds: float) -> None:
        before = self._seconds.get(key)
        if before is None and len(self._seconds) >= self.LIMIT:
            self._seconds.clear()
        self._seconds[key] = seconds if before is None else max(seconds, DECAY * before)


PACE = _Pace()  # for every connection of the process: a statement's time hardly depends on which one runs it


class OneTripConnection(aiosqlite.Connection):
    busy_ms = 5000

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._on_thread = 0  # calls of `run` handed to aiosqlite's thread and not finished there yet
        self._counting = threading.Lock()

    @contextmanager
    async def cursor(self) -> OneTripCursor:  # type: ignore[override]
        return OneTripCursor(self)

    async def run(self, key: str, call: Callable[[sqlite3.Connection], T], *, here: bool = True) -> T:
        """`call` on the event loop's thread when the statement `key` has been quick, nothing of this connection is
        on aiosqlite's thread and no lock is in the way; otherwise on aiosqlite's thread, waiting for a lock up to
        busy_ms. `here` false: always on aiosqlite's thread."""
        if here and self._on_thread == 0 and self._tx.empty() and self._running and PACE.quick(key):
            connection = self._conn
            changes = connection.total_changes
            started = time.perf_counter()
            try:
                result = call(connection)
            except sqlite3.OperationalError as error:
                busy = getattr(error, "sqlite_errorcode", 0) & 0xFF == _SQLITE_BUSY
                if not busy or connection.total_changes != changes:  # part of it was done: not to be run twice
                    raise
            else:
                PACE.note(key, time.perf_counter() - started)
                return result
        if not self._running or not self._connection:
            raise ValueError("Connection closed")  # as aiosqlite's own calls say it
        with self._counting:
            self._on_thread += 1  # counted down on the thread when the call ends there, even if no one awaits it
        answer: T = await self._execute(self._patiently, key, call)  # type: ignore[no-untyped-call]
        return answer

    def _patiently(self, key: str, call: Callable[[sqlite3.Connection], T]) -> T:
        """On aiosqlite's thread: `call`, timed, with SQLite waiting up to busy_ms for a lock meanwhile."""
        try:
            connection = self._conn
            connection.execute(f"PRAGMA busy_timeout={int(self.busy_ms)}")
            try:
                started = time.perf_counter()
                result = call(connection)
                PACE.note(key, time.perf_counter() - started)
                return result
            finally:
                connection.execute("PRAGMA busy_timeout=0")
        finally:
            with self._counting:
                self._on_thread -= 1

    async def execute_fetchall(self, sql: str, parameters: Iterable[Any] | None = None) -> list[Any]:  # type: ignore[override]
        values = tuple(parameters) if parameters is not None else ()
        described = await self.run(sql, lambda connection: _execute(connection, sql, values))
        return described[3]

    async def commit(self) -> None:
        await self.run("-- commit", sqlite3.Connection.commit, here=False)

    async def rollback(self) -> None:
        await self.run(_ROLLBACK, sqlite3.Connection.rollback)


class OneTripCursor:
    """The part of aiosqlite's Cursor that SQLAlchemy uses, each statement one trip to the thread."""

    arraysize = 1

    def __init__(self, connection: OneTripConnection) -> None:
        self._connection = connection
        self.description: Any = None
        self.rowcount = -1
        self.lastrowid: int | None = None
        self._rows: list[Any] = []

    async def __aenter__(self) -> OneTripCursor:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        self._rows = []

    async def execute(self, sql: str, parameters: Sequence[Any] | None = None) -> OneTripCursor:
        waits = _BUSY_TIMEOUT.fullmatch(sql)
        if waits:  # the connection's wait for a lock, kept here: SQLite's own stays 0 (the module's docstring)
            self._connection.busy_ms = int(waits.group(1))
            self.description, self.rowcount, self.lastrowid, self._rows = None, -1, None, []
            return self
        values = parameters if parameters is not None else ()
        return self._took(await self._connection.run(sql, lambda connection: _execute(connection, sql, values)))

    async def executemany(self, sql: str, parameters: Iterable[Sequence[Any]]) -> OneTripCursor:
        rows = parameters if isinstance(parameters, list) else list(parameters)  # it may be run twice (busy)
        return self._took(await self._connection.run(sql, lambda connection: _execute_many(connection, sql, rows)))

    def _took(self, described: Described) -> OneTripCursor:
        self.description, self.rowcount, self.lastrowid, self._rows = described
        return self

    async def fetchone(self) -> Any:
        return self._rows.pop(0) if self._rows else None

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        taken, self._rows = self._rows[: size or self.arraysize], self._rows[size or self.arraysize :]
        return taken

    async def fetchall(self) -> list[Any]:
        taken, self._rows = self._rows, []
        return taken

    async def close(self) -> None:
        self._rows = []


def _execute(connection: sqlite3.Connection, sql: str, parameters: Sequence[Any]) -> Described:
    """On aiosqlite's thread: the statement, its rows and what SQLAlchemy reads of the cursor, then closed."""
    cursor = connection.cursor()
    try:
        cursor.execute(sql, parameters)
        rows = cursor.fetchall() if cursor.description else []
        return cursor.description, cursor.rowcount, cursor.lastrowid, rows
    finally:
        cursor.close()


def _execute_many(connection: sqlite3.Connection, sql: str, parameters: Iterable[Sequence[Any]]) -> Described:
    cursor = connection.cursor()
    try:
        cursor.executemany(sql, parameters)
        return cursor.description, cursor.rowcount, cursor.lastrowid, []
    finally:
        cursor.close()
