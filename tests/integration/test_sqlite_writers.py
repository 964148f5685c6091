"""Writing transactions of one process take turns on SQLite (instead of spinning in SQLite's busy handler), run
side by side on PostgreSQL, and a use case nested in another never waits for itself."""

from __future__ import annotations

import asyncio

from sqlalchemy import text

from service.store.db import create_engine, session_factory, transaction
from tests.conftest import BACKEND


async def test_writers_take_turns_on_sqlite_only(database_url: str) -> None:
    engine = create_engine(database_url)
    sessions = session_factory(engine)
    events: list[str] = []
    first_inside = asyncio.Event()
    try:

        async def first() -> None:
            async with transaction(sessions) as session:
                await session.execute(text("SELECT 1"))
                events.append("first in")
                first_inside.set()
                for _ in range(20):  # give the second every chance to start meanwhile
                    await asyncio.sleep(0)
                events.append("first out")

        async def second() -> None:
            await first_inside.wait()
            async with transaction(sessions) as session:
                events.append("second in")
                await session.execute(text("SELECT 1"))

        await asyncio.wait_for(asyncio.gather(first(), second()), timeout=30)
    finally:
        await engine.dispose()
    if BACKEND == "sqlite":
        assert events == ["first in", "first out", "second in"]
    else:
        assert events == ["first in", "second in", "first out"]


async def test_a_transaction_inside_another_does_not_wait_for_it(database_url: str) -> None:
    engine = create_engine(database_url)
    sessions = session_factory(engine)
    try:

        async def nested() -> int:
            async with transaction(sessions) as outer:
                await outer.execute(text("SELECT 1"))
                async with transaction(sessions) as inner:
                    return int((await inner.execute(text("SELECT 2"))).scalar_one())

        assert await asyncio.wait_for(nested(), timeout=30) == 2
    finally:
        await engine.dispose()
