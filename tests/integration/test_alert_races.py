"""A coordinator resolves an alert at the moment the safety net's run closes it: the coordinator's resolution
(who, how) must survive, not be overwritten by the run's "condition ended". On PostgreSQL the two really
overlap here: the coordinator's transaction holds the row while the run starts, and the run must wait for it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
from fastapi import FastAPI
from sqlalchemy import select, text

from service.app.alerts import run_safety_net
from service.settings import Settings
from service.store.alerts import RESOLVED, Alert
from service.store.db import SessionFactory, transaction
from tests.support.flow import assign, discharge, register_peer

Auth = Callable[..., dict[str, str]]


async def _until_a_backend_waits_for_a_lock(sessions: SessionFactory) -> None:
    """Poll PostgreSQL until another backend of this database waits on a row lock (the run, blocked)."""
    query = text(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    for _ in range(2000):
        async with sessions() as session:
            if await session.scalar(query):
                return
        await asyncio.sleep(0.005)  # a poll for a condition, not a timing assertion
    raise AssertionError("the run never waited for the coordinator's row")


async def test_the_run_does_not_overwrite_a_coordinators_resolution(
    app: FastAPI, client: httpx.AsyncClient, auth: Auth, settings: Settings
) -> None:
    sessions: SessionFactory = app.state.sessions
    episode = await discharge(client, auth)
    assert (await run_safety_net(sessions, settings)).opened == 3
    peer = await register_peer(client, auth)
    await assign(client, auth, episode["id"], peer["id"])  # the unassigned alert's condition has ended

    postgres = settings.database_url.startswith("postgresql")
    run: asyncio.Task[object] | None = None
    async with transaction(sessions) as session:  # the coordinator's resolve, holding the row
        found = await session.execute(select(Alert).where(Alert.kind == "unassigned").with_for_update())
        alert = found.scalar_one()
        alert.state, alert.resolved_at, alert.resolved_by = RESOLVED, alert.opened_at, "coordinator:coord"
        alert.resolution, alert.note = "coordinator", "ok"
        await session.flush()
        if postgres:
            run = asyncio.create_task(run_safety_net(sessions, settings))
            await _until_a_backend_waits_for_a_lock(sessions)
    if run is None:  # SQLite has one writer: the run can only come after
        await run_safety_net(sessions, settings)
    else:
        await run

    async with sessions() as session:
        after = (await session.execute(select(Alert).where(Alert.kind == "unassigned"))).scalar_one()
    assert (after.state, after.resolution, after.resolved_by, after.note) == (
        RESOLVED,
        "coordinator",
        "coordinator:coord",
        "ok",
    )
