"""Pooled connections the database closed behind our back (a restart, an idle timeout): one that sat idle is
pinged and replaced before use; one used moments ago fails its statement as an outage (a 503), and SQLAlchemy
replaces it and every older connection, so the next read works. On SQLite nothing can close them: reads work."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from sqlalchemy import bindparam, event, exc, literal, select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from service.store import claims
from service.store.db import create_engine, is_outage, session_factory, transaction
from service.store.direct import DirectRead
from tests.conftest import BACKEND

READ = DirectRead(select(literal(1).label("one")).where(literal(2) == bindparam("two")))


async def fill_pool(engine: AsyncEngine, count: int) -> None:
    """`count` connections opened together and returned to the pool."""
    started = asyncio.Event()

    async def hold() -> None:
        async with engine.connect() as connection:
            await connection.exec_driver_sql("SELECT 1")
            await started.wait()

    tasks = [asyncio.create_task(hold()) for _ in range(count)]
    await asyncio.sleep(0)
    started.set()
    await asyncio.gather(*tasks)


async def close_from_the_server(database_url: str) -> int:
    """What a restart does to the pool: the server ends every other session of the database."""
    if BACKEND != "postgres":
        return 0
    admin = await asyncpg.connect(make_url(database_url).set(drivername="postgresql").render_as_string(False))
    try:
        ended = await admin.fetch(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    finally:
        await admin.close()
    return len(ended)


async def test_idle_connections_closed_by_the_server_are_replaced_before_use(database_url: str) -> None:
    engine = create_engine(database_url, ping_after_idle_seconds=0.0)  # every pooled connection counts as idle
    try:
        await fill_pool(engine, 3)
        ended = await close_from_the_server(database_url)
        assert ended >= (3 if BACKEND == "postgres" else 0)
        for _ in range(5):
            assert await READ.rows(engine, {"two": 2}) == [(1,)]
    finally:
        await engine.dispose()


async def test_a_connection_closed_while_in_use_fails_as_an_outage_once(database_url: str) -> None:
    engine = create_engine(database_url, ping_after_idle_seconds=3600.0)  # never pinged
    try:
        await fill_pool(engine, 3)
        if await close_from_the_server(database_url):
            with pytest.raises(exc.DBAPIError) as raised:
                await READ.rows(engine, {"two": 2})
            assert is_outage(raised.value)
        for _ in range(5):  # every older connection was replaced, not only the one that failed
            assert await READ.rows(engine, {"two": 2}) == [(1,)]
    finally:
        await engine.dispose()


async def test_a_claim_on_a_connection_closed_behind_its_back_fails_as_an_outage_once(database_url: str) -> None:
    """The worker's claim goes to the driver itself (service/store/claims.py): a connection the server closed
    fails that claim as an outage and is replaced with every older one, so the next claims work (it once handed
    the same dead connection out again, claim after claim)."""
    engine = create_engine(database_url, ping_after_idle_seconds=3600.0)  # never pinged
    sessions = session_factory(engine)
    now = datetime.now(UTC)

    async def claim_now() -> list[claims.Claimed]:
        async with transaction(sessions) as session:
            return await claims.claim(
                session, "tok", now, now + timedelta(minutes=1), 10, ["contact"], skip_locked=True
            )

    try:
        await fill_pool(engine, 3)
        if await close_from_the_server(database_url):
            with pytest.raises(exc.DBAPIError) as raised:
                await claim_now()
            assert is_outage(raised.value)
        for _ in range(5):
            assert await claim_now() == []
    finally:
        await engine.dispose()


async def test_a_burst_past_the_pool_waits_for_its_connections_instead_of_opening_more(database_url: str) -> None:
    """Three times as many concurrent users as the pool has connections: each is served, on the pool's own
    connections (an extra connection per checkout, a new PostgreSQL session each time, is what made a burst of
    summary reads collapse)."""
    engine = create_engine(database_url)
    opened = 0

    @event.listens_for(engine.sync_engine, "connect")
    def _opened(_dbapi_connection: Any, _record: Any) -> None:
        nonlocal opened
        opened += 1

    served = 0

    async def use() -> None:
        nonlocal served
        async with engine.connect() as connection:
            await connection.exec_driver_sql("SELECT 1")
            for _ in range(3):  # still holding it while the others ask for theirs
                await asyncio.sleep(0)
            served += 1

    size = engine.sync_engine.pool.size()  # type: ignore[attr-defined]
    try:
        await asyncio.wait_for(asyncio.gather(*(use() for _ in range(3 * size))), timeout=60)
    finally:
        await engine.dispose()
    assert served == 3 * size
    assert opened <= size
