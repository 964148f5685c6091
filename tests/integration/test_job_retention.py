"""Jobs done long ago are deleted by the worker (PEERWAY_OUTBOX_KEEP_DONE_DAYS, 30 by default); work still to do,
dead letters and the jobs a person discarded are never deleted however old, so nothing waiting is lost and what
an operator decided stays on record."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert, select

from service.app import delivery
from service.app.delivery import purge_done_jobs
from service.settings import Settings
from service.store.db import create_engine, session_factory, transaction
from service.store.jobs import Job
from service.workers.worker import periodic_checks

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def days_ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


# (subject, status, available, done): each job's subject says what is expected of it.
JOBS = [
    ("old-done", "done", days_ago(40), days_ago(40)),
    ("old-done-2", "done", days_ago(31), days_ago(30.5)),
    ("recent-done", "done", days_ago(10), days_ago(10)),
    ("due-long-ago-done-lately", "done", days_ago(45), days_ago(2)),  # retried for weeks: kept by when it was done
    ("old-pending", "pending", days_ago(60), None),
    ("old-dead", "dead", days_ago(60), None),
    ("old-discarded", "discarded", days_ago(60), None),
]
PURGED = {"old-done", "old-done-2"}


async def fill(database_url: str, jobs: list[tuple[str, str, datetime, datetime | None]]) -> None:
    engine = create_engine(database_url)
    try:
        async with transaction(session_factory(engine)) as session:
            await session.execute(
                insert(Job),
                [
                    {
                        "kind": "contact",
                        "subject_id": subject,
                        "site": "default",
                        "status": status,
                        "attempts": 1,
                        "available_at": available,
                        "created_at": available,
                        "done_at": done,
                    }
                    for subject, status, available, done in jobs
                ],
            )
    finally:
        await engine.dispose()


async def subjects(settings: Settings) -> set[str]:
    engine = create_engine(settings.database_url)
    try:
        async with session_factory(engine)() as session:
            return set((await session.execute(select(Job.subject_id))).scalars())
    finally:
        await engine.dispose()


async def purge(settings: Settings) -> int:
    engine = create_engine(settings.database_url)
    try:
        return await purge_done_jobs(session_factory(engine), settings, NOW)
    finally:
        await engine.dispose()


async def test_only_jobs_done_longer_ago_than_kept_are_deleted(settings: Settings) -> None:
    await fill(settings.database_url, JOBS)
    assert settings.outbox_keep_done_days == 30
    assert await purge(settings) == len(PURGED)
    assert await subjects(settings) == {subject for subject, *_ in JOBS} - PURGED
    assert await purge(settings) == 0  # the next run finds nothing more


async def test_many_old_jobs_go_a_batch_at_a_time(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(delivery, "PURGE_BATCH", 3)
    old = [(f"done-{n}", "done", days_ago(50), days_ago(50)) for n in range(10)]
    await fill(settings.database_url, [*old, ("old-pending", "pending", days_ago(50), None)])
    assert await purge(settings) == 10  # batches of 3, 3, 3 and 1
    assert await subjects(settings) == {"old-pending"}


async def test_keeping_done_jobs_for_ever(settings: Settings) -> None:
    await fill(settings.database_url, JOBS)
    assert await purge(settings.model_copy(update={"outbox_keep_done_days": 0})) == 0
    assert await subjects(settings) == {subject for subject, *_ in JOBS}


def test_every_worker_deletes_them_hourly(settings: Settings) -> None:
    engine = create_engine(settings.database_url)
    checks = {check.name: check.every_seconds for check in periodic_checks(session_factory(engine), settings)}
    assert checks["purge_done_jobs"] == 3600
