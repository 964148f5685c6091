"""aiosqlite with one trip to its thread per statement instead of four.

aiosqlite runs every sqlite3 call on a thread of its own, one call per trip: SQLAlchemy's statement is a trip to
make the cursor, one to execute, one to fetch the rows and one to close it. Each trip is a future, a queue, a
wake-up of the event loop through its self-pipe and two thread switches, and they cost a busy intake more than
SQLite's own work (about twenty trips per Da Vinci message). The connection here is aiosqlite's, with one change:
its cursor does the four calls in one trip, and keeps what SQLAlchemy reads afterwards (description, rowcount,
lastrowid, the rows). SQLAlchemy fetches every row of a statement at once anyway (no server-side cursors here), so
nothing it sees changes; transactions, commits, errors and the thread are aiosqlite's as before.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import aiosqlite
from aiosqlite.context import contextmanager

Described = tuple[Any, int, int | None, list[Any]]


def connect(database: str, **kwargs: Any) -> aiosqlite.Connection:
    """What aiosqlite.connect answers (SQLAlchemy awaits it), as a OneTripConnection."""

    def connector() -> sqlite3.Connection:
        made: sqlite3.Connection = sqlite3.connect(database, **kwargs)
        return made

    connection: aiosqlite.Connection = OneTripConnection(connector, 64)
    connection._thread.daemon = True  # as SQLAlchemy's aiosqlite dialect sets it: never hold the process open
    return connection


class OneTripConnection(aiosqlite.Connection):
    @contextmanager
    async def cursor(self) -> OneTripCursor:  # type: ignore[override]
        return OneTripCursor(self)


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
        return await self._run(_execute, sql, parameters if parameters is not None else ())

    async def executemany(self, sql: str, parameters: Iterable[Sequence[Any]]) -> OneTripCursor:
        return await self._run(_execute_many, sql, parameters)

    async def _run(
        self, call: Callable[[sqlite3.Connection, str, Any], Described], sql: str, args: Any
    ) -> OneTripCursor:
        connection = self._connection
        described: Described = await connection._execute(call, connection._conn, sql, args)  # type: ignore[no-untyped-call]
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
