"""On PostgreSQL a job queued by another process reaches a waiting worker when its transaction commits, not at
the worker's next poll (LISTEN/NOTIFY, migration 0017), and a worker whose listening connection is cut listens
again. These tests run on a PostgreSQL of their own in both runs of the suite (the SQLite run too: the feature
is PostgreSQL's); on SQLite a worker has nothing to listen to, and the last test checks it does not try."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import update
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession

from service.settings import Settings
from service.store import claims
from service.store import jobs as store
from service.store.db import create_engine, session_factory, transaction
from service.store.migrate import upgrade
from service.workers import jobs, retry
from service.workers.jobs import run_jobs
from tests.support.postgres import throwaway_postgres

KIND = "signal-test"
AN_HOUR = 3600.0  # the poll: a job done within the deadline below was not found by it
DEADLINE_SECONDS = 20.0


_names = itertools.count()


@pytest.fixture(scope="module")
def _postgres() -> Iterator[str]:
    """A PostgreSQL server of this module's, with a migrated template database."""
    with throwaway_postgres() as server_url:

        async def create() -> None:
            admin = await asyncpg.connect(admin_dsn(server_url))
            await admin.execute("CREATE DATABASE signals_template")
            await admin.close()

        asyncio.run(create())
        upgrade(make_url(server_url).set(database="signals_template").render_as_string(hide_password=False))
        yield server_url


@pytest.fixture
async def database_url(_postgres: str) -> AsyncIterator[str]:
    """A fresh copy of the migrated database for each test (whatever PEERWAY_TEST_DB says)."""
    name = f"signals_{next(_names)}"
    admin = await asyncpg.connect(admin_dsn(_postgres))
    await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE signals_template')
    await admin.close()
    yield make_url(_postgres).set(database=name).render_as_string(hide_password=False)
    admin = await asyncpg.connect(admin_dsn(_postgres))
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.close()


class Doer:
    concurrency = 1
    limits = retry.Limits(1.0)

    def __init__(self) -> None:
        self.done: asyncio.Queue[str] = asyncio.Queue()

    async def prepare(self, jobs: Sequence[claims.Claimed]) -> None:
        return None

    async def perform(self, job: claims.Claimed) -> str | None:
        self.done.put_nowait(job.subject_id)
        return None

    async def settle(self, session: AsyncSession, done: Sequence[claims.Claimed], now: datetime) -> None:
        return None


def admin_dsn(database_url: str) -> str:
    return make_url(database_url).set(drivername="postgresql").render_as_string(False)


async def listening_backends(admin: asyncpg.Connection) -> list[int]:
    """The sessions of this database whose last statement was the worker's LISTEN."""
    rows = await admin.fetch(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND state = 'idle' AND query = $1",
        f'LISTEN "{store.JOB_SIGNALS}"',
    )
    return [int(row["pid"]) for row in rows]


async def until_listening(admin: asyncpg.Connection, besides: Sequence[int] = ()) -> int:
    """The pid of the worker's listening session once it exists (other than `besides`)."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    while time.monotonic() < deadline:
        fresh = [pid for pid in await listening_backends(admin) if pid not in besides]
        if fresh:
            return fresh[0]
        await asyncio.sleep(0.02)
    raise AssertionError("the worker never listened for jobs")


@pytest.fixture
async def worker(settings: Settings) -> AsyncIterator[Doer]:
    """A worker that polls once an hour, in this process, with its own engine."""
    engine = create_engine(settings.database_url)
    doer = Doer()
    stop = asyncio.Event()
    hourly = settings.model_copy(update={"outbox_poll_seconds": AN_HOUR})
    running = asyncio.create_task(run_jobs(session_factory(engine), {KIND: doer}, hourly, stop))
    try:
        yield doer
    finally:
        stop.set()
        await asyncio.wait_for(running, DEADLINE_SECONDS)
        await engine.dispose()


async def queue_elsewhere(database_url: str, subject: str) -> None:
    """What an API process does: the job in a transaction of its own engine (another process's pool)."""
    engine = create_engine(database_url)
    try:
        async with transaction(session_factory(engine)) as session:
            session.add(store.new_job(KIND, subject, "default", datetime.now(UTC)))
    finally:
        await engine.dispose()


async def test_a_job_queued_by_another_process_is_done_at_once_not_at_the_next_poll(
    settings: Settings, worker: Doer
) -> None:
    admin = await asyncpg.connect(admin_dsn(settings.database_url))
    try:
        await until_listening(admin)
        await queue_elsewhere(settings.database_url, "first")
        assert await asyncio.wait_for(worker.done.get(), DEADLINE_SECONDS) == "first"
    finally:
        await admin.close()


async def test_a_worker_whose_listening_connection_is_cut_listens_again(settings: Settings, worker: Doer) -> None:
    admin = await asyncpg.connect(admin_dsn(settings.database_url))
    try:
        cut = await until_listening(admin)
        await admin.execute("SELECT pg_terminate_backend($1)", cut)  # what a server restart does to it
        await until_listening(admin, besides=[cut])
        await queue_elsewhere(settings.database_url, "after the cut")
        assert await asyncio.wait_for(worker.done.get(), DEADLINE_SECONDS) == "after the cut"
    finally:
        await admin.close()


async def test_only_a_row_a_worker_could_claim_now_is_announced(database_url: str) -> None:
    """Claims, lease renewals, "done", a retry scheduled for later and a job held back notify nobody; a job queued,
    given back or due again does. Notifications arrive in commit order, so the one after each silent step names
    the next audible one."""
    heard: asyncio.Queue[str] = asyncio.Queue()
    listener = await asyncpg.connect(admin_dsn(database_url))
    await listener.add_listener(store.JOB_SIGNALS, lambda _c, _pid, _channel, kind: heard.put_nowait(kind))
    engine = create_engine(database_url)
    sessions = session_factory(engine)

    async def next_heard() -> str:
        return await asyncio.wait_for(heard.get(), DEADLINE_SECONDS)

    try:
        now = datetime.now(UTC)
        later = now + timedelta(hours=1)
        async with transaction(sessions) as session:
            session.add_all([store.new_job("contact", c, "default", now) for c in ("c1", "c2", "c3")])
        assert await next_heard() == "contact"  # three rows, one notification
        async with transaction(sessions) as session:
            held = await claims.claim(session, "t", now, now + timedelta(minutes=5), 3, ["contact"], skip_locked=True)
        async with transaction(sessions) as session:
            await store.renew_lease(session, "t", now + timedelta(minutes=10))
            await store.record_done(session, [held[0].id], "t", now)
            failure = store.Failure(dead=False, available_at=later, http_status=503, error="busy", outcome_json=None)
            assert await store.record_failure(session, held[1].id, "t", now, failure)
            session.add(store.new_job("fetch", "e0", "default", now, available_at=later))
        async with transaction(sessions) as session:
            session.add(store.new_job("careteam", "e1", "default", now))
        assert await next_heard() == "careteam"  # nothing in between
        async with transaction(sessions) as session:
            assert await store.release(session, "t", [held[2].id]) == 1  # a stopping worker gives it back
        assert await next_heard() == "contact"
        async with transaction(sessions) as session:  # the retry's time came: made due, as a replay does
            await session.execute(
                update(store.Job).where(store.Job.id == held[1].id).values(available_at=now - timedelta(seconds=1))
            )
        assert await next_heard() == "contact"
        async with transaction(sessions) as session:
            session.add(store.new_job("flag", "a1", "default", now))
        assert await next_heard() == "flag"  # and nothing else was announced before it
    finally:
        await engine.dispose()
        await listener.close()


async def test_a_worker_told_not_to_listen_does_not(settings: Settings) -> None:
    """PEERWAY_OUTBOX_LISTEN=false (behind PgBouncer's transaction mode): the listening part of the worker ends at
    once instead of holding a connection; the worker relies on its poll."""
    engine = create_engine(settings.database_url)
    quiet = settings.model_copy(update={"outbox_listen": False})
    try:
        done = asyncio.create_task(jobs._listen(session_factory(engine), [], quiet, asyncio.Event()))
        await asyncio.wait_for(done, DEADLINE_SECONDS)  # a listening one runs until it is stopped
    finally:
        await engine.dispose()


async def test_a_worker_on_sqlite_has_nothing_to_listen_to(tmp_path: Path, settings: Settings) -> None:
    """SQLite cannot tell another process: the listening part ends at once, and the poll finds the jobs."""
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'alone.db'}")
    try:
        done = asyncio.create_task(jobs._listen(session_factory(engine), [], settings, asyncio.Event()))
        await asyncio.wait_for(done, DEADLINE_SECONDS)
    finally:
        await engine.dispose()
