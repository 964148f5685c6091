"""SQLite's driver (service/store/sqlite_driver.py): quick statements run on the event loop's thread, slow ones on
aiosqlite's, and a lock held by another connection (another process writing) is waited for off the event loop, up
to the busy timeout the connection was given.

These use a SQLite file of their own, so they run in the PostgreSQL run of the suite too.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from sqlalchemy import exc, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from service.store import sqlite_driver
from service.store.db import create_engine

INSERT = "INSERT INTO note (body) VALUES (:body)"


@asynccontextmanager
async def engine_on(path: Path) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    try:
        async with engine.begin() as connection:
            await connection.execute(text("CREATE TABLE note (id INTEGER PRIMARY KEY, body TEXT NOT NULL)"))
        yield engine
    finally:
        await engine.dispose()


def held_lock(path: Path) -> sqlite3.Connection:
    """Another connection (as another process would) holding the database's write lock."""
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    return other


async def insert(connection: AsyncConnection, body: str) -> None:
    await connection.execute(text(INSERT), {"body": body})


async def notes(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as connection:
        return list((await connection.execute(text("SELECT body FROM note ORDER BY id"))).scalars())


async def driver_of(connection: AsyncConnection) -> sqlite_driver.OneTripConnection:
    driver = (await connection.get_raw_connection()).driver_connection
    assert isinstance(driver, sqlite_driver.OneTripConnection)
    return driver


async def where_runs(connection: AsyncConnection) -> int:
    """The thread SQLite ran a statement on (a function registered on the connection answers it)."""
    return int((await connection.execute(text("SELECT running_on()"))).scalar_one())


async def test_quick_statements_run_on_the_event_loop_and_slow_ones_off_it(tmp_path: Path) -> None:
    async with engine_on(tmp_path / "driver.db") as engine, engine.connect() as connection:
        driver = await driver_of(connection)
        await driver.create_function("running_on", 0, threading.get_ident)
        here = threading.get_ident()

        first = await where_runs(connection)  # not timed yet: aiosqlite's thread, which times it
        second = await where_runs(connection)  # quick: right here
        sql = "SELECT running_on()"
        for _ in range(20):  # the statement has been slow lately (a report over many rows, say)
            sqlite_driver.PACE.note(sql, 0.5)
        third = await where_runs(connection)

    assert first != here
    assert second == here
    assert third != here


async def test_a_lock_held_elsewhere_is_waited_for_without_holding_the_event_loop(tmp_path: Path) -> None:
    path = tmp_path / "driver.db"
    async with engine_on(path) as engine:
        async with engine.begin() as connection:
            for n in range(3):  # timed and known quick: the next one is tried on the event loop first
                await insert(connection, f"before {n}")

        other = held_lock(path)
        turns = 0

        async def other_process() -> None:
            """Commits its transaction once the event loop has run this task a few times while the insert waits:
            if waiting held the event loop, this never ran and the insert would fail when its wait ran out."""
            nonlocal turns
            while turns < 5:
                turns += 1
                await asyncio.sleep(0.01)
            other.execute("INSERT INTO note (body) VALUES ('other')")
            other.execute("COMMIT")

        async def ours() -> None:
            async with engine.begin() as connection:
                await insert(connection, "ours")

        try:
            await asyncio.wait_for(asyncio.gather(ours(), other_process()), timeout=25)
        finally:
            other.close()
        assert turns == 5
        assert await notes(engine) == ["before 0", "before 1", "before 2", "other", "ours"]


async def test_the_busy_timeout_given_is_how_long_a_lock_is_waited_for(tmp_path: Path) -> None:
    """`PRAGMA busy_timeout=N` (tests, tools) sets the driver's wait; SQLite's own connection never waits."""
    path = tmp_path / "driver.db"
    async with engine_on(path) as engine:
        async with engine.connect() as connection:
            await connection.execute(text("PRAGMA busy_timeout=50"))
            other = held_lock(path)
            try:
                with pytest.raises(exc.OperationalError, match="database is locked"):
                    await insert(connection, "refused")
                await connection.rollback()
            finally:
                other.close()
            sqlite_connection = (await driver_of(connection))._conn
            assert sqlite_connection.execute("PRAGMA busy_timeout").fetchone() == (0,)
            await insert(connection, "after")
            await connection.commit()
        assert await notes(engine) == ["after"]


async def test_a_cancelled_call_still_on_the_thread_keeps_the_connection_to_itself(tmp_path: Path) -> None:
    """A task cancelled while its statement waits on aiosqlite's thread (for a lock held elsewhere) leaves that
    statement running there. What the connection does next (the pool's rollback) waits behind it on the same
    thread: run on the event loop it would meet the statement holding the connection and wait with it, and the
    event loop would stop until the lock came free."""
    path = tmp_path / "driver.db"
    async with engine_on(path) as engine, engine.connect() as connection:
        driver = await driver_of(connection)
        await connection.execute(text("PRAGMA busy_timeout=10000"))
        for n in range(3):  # known quick: tried on the event loop first
            await insert(connection, f"warm {n}")
        await connection.rollback()

        other = held_lock(path)
        order: list[str] = []

        async def other_process() -> None:
            for _ in range(5):
                await asyncio.sleep(0.01)
            other.execute("COMMIT")  # the lock comes free
            order.append("lock released")

        waiting = asyncio.create_task(driver.execute_fetchall(INSERT.replace(":body", "?"), ["cancelled"]))
        await asyncio.sleep(0)  # its turn: busy here, so handed to the thread, where it waits for the lock
        assert driver._on_thread == 1
        waiting.cancel()
        releasing = asyncio.create_task(other_process())
        try:
            await asyncio.wait_for(driver.rollback(), timeout=20)
            order.append("rolled back")
            await releasing
        finally:
            other.close()
        assert order == ["lock released", "rolled back"]
        assert await notes(engine) == []
