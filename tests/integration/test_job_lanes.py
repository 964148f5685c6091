"""A worker's lane overlaps its claim rounds: the next batch is claimed while the last jobs of one are in flight,
within the handler's concurrency, and never a job whose subject has an older one still pending (on the real
database of the run: SQLite or PostgreSQL)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from service.settings import Settings
from service.store import claims
from service.store import jobs as store
from service.store.db import SessionFactory, create_engine, session_factory, transaction
from service.workers import jobs, retry
from service.workers.jobs import run_jobs

KIND = "lane-test"
HANG_GUARD_SECONDS = 60  # a lane that waits for a batch's tail before claiming the next never gets there


class Recorder:
    """Does nothing but note what ran when; the job about `held` waits until the one about `until` has started."""

    concurrency = 2
    limits = retry.Limits(1.0)

    def __init__(self, sessions: SessionFactory, total: int, held: str, until: str) -> None:
        self._sessions = sessions
        self._total = total
        self._held, self._until = held, until
        self.released = asyncio.Event()
        self.finished = asyncio.Event()
        self.started: list[str] = []
        self.in_flight: list[str] = []
        self.most_in_flight = 0
        self.older_done: dict[int, bool] = {}  # job id -> whether every older job of its subject was recorded done

    async def prepare(self, jobs: Sequence[claims.Claimed]) -> None:
        return None

    async def perform(self, job: claims.Claimed) -> str | None:
        self.older_done[job.id] = await self._older_recorded(job)
        self.started.append(job.subject_id)
        self.in_flight.append(job.subject_id)
        self.most_in_flight = max(self.most_in_flight, len(self.in_flight))
        try:
            if job.subject_id == self._until:
                self.released.set()
            if job.subject_id == self._held:
                await self.released.wait()
            await asyncio.sleep(0)
        finally:
            self.in_flight.remove(job.subject_id)
        if len(self.started) == self._total:
            self.finished.set()
        return None

    async def settle(self, session: AsyncSession, done: Sequence[claims.Claimed], now: datetime) -> None:
        return None

    async def _older_recorded(self, job: claims.Claimed) -> bool:
        async with self._sessions() as session:
            older = await session.scalars(
                select(store.Job.status).where(
                    store.Job.kind == KIND, store.Job.subject_id == job.subject_id, store.Job.id < job.id
                )
            )
            return all(status == store.DONE for status in older)


async def drain(settings: Settings, subjects: list[str], held: str, until: str) -> tuple[Recorder, list[str]]:
    """Queue one job per subject (in order), run a lane (batches of 2, 2 at a time) until each has run."""
    lane = settings.model_copy(update={"outbox_batch_size": 2, "outbox_poll_seconds": 0.05})
    engine = create_engine(settings.database_url)
    sessions = session_factory(engine)
    try:
        now = datetime.now(UTC)
        async with transaction(sessions) as session:
            session.add_all([store.new_job(KIND, subject, "default", now) for subject in subjects])
        recorder = Recorder(sessions, len(subjects), held, until)
        stop = asyncio.Event()
        running = asyncio.create_task(run_jobs(sessions, {KIND: recorder}, lane, stop))
        try:
            await asyncio.wait_for(recorder.finished.wait(), HANG_GUARD_SECONDS)
        finally:
            stop.set()  # the lane finishes and records the jobs in hand before it returns
            await asyncio.wait_for(running, HANG_GUARD_SECONDS)
        async with sessions() as session:
            statuses = list(await session.scalars(select(store.Job.status).where(store.Job.kind == KIND)))
        return recorder, statuses
    finally:
        await engine.dispose()


async def test_the_next_batch_is_delivered_while_the_last_job_of_a_batch_is_still_in_flight(
    settings: Settings,
) -> None:
    # Batch 1 is a, b; b is answered only once c (batch 2) has started: a lane that claims the next batch only
    # after the whole of one is done would wait forever.
    recorder, statuses = await drain(settings, ["a", "b", "c", "d", "e", "f"], held="b", until="c")
    assert sorted(recorder.started) == ["a", "b", "c", "d", "e", "f"]  # each once
    assert recorder.started.index("c") < len(recorder.started) - 1
    assert recorder.most_in_flight <= Recorder.concurrency  # the rounds share the handler's concurrency
    assert statuses == [store.DONE] * 6


async def test_a_job_waits_for_the_older_job_of_its_subject_even_when_rounds_overlap(settings: Settings) -> None:
    # Batch 1 is x (subject x) and y, y held until z starts; the overlapping round may take z but not the second
    # job about x, which runs only once the first is recorded done.
    recorder, statuses = await drain(settings, ["x", "y", "x", "z"], held="y", until="z")
    assert sorted(recorder.started) == ["x", "x", "y", "z"]
    assert all(recorder.older_done.values())
    assert statuses == [store.DONE] * 4


async def test_a_job_waiting_behind_an_older_one_of_its_subject_runs_when_that_one_is_done_not_a_poll_later(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two jobs about one contact (its creation, then its correction) and an hour between polls. The first is held
    # until the lane's next claim round has come back empty (the second is not claimable while the first is
    # pending); the lane must then look again by itself once the first is recorded done, not an hour later.
    rounds_started = 0
    second_round_back = asyncio.Event()
    real_run_once = jobs.run_once

    async def counted(*args: Any, **kwargs: Any) -> jobs.JobReport:
        nonlocal rounds_started
        rounds_started += 1
        this_round = rounds_started
        try:
            return await real_run_once(*args, **kwargs)
        finally:
            if this_round == 2:
                second_round_back.set()

    monkeypatch.setattr(jobs, "run_once", counted)
    lane = settings.model_copy(update={"outbox_batch_size": 2, "outbox_poll_seconds": 3600})
    engine = create_engine(settings.database_url)
    sessions = session_factory(engine)
    try:
        async with transaction(sessions) as session:
            session.add_all([store.new_job(KIND, "a", "default", datetime.now(UTC)) for _ in range(2)])
        started: list[str] = []
        finished = asyncio.Event()

        class Correction(Recorder):
            async def perform(self, job: claims.Claimed) -> str | None:
                started.append(job.subject_id)
                if len(started) == 1:
                    await second_round_back.wait()
                else:
                    finished.set()
                return None

        stop = asyncio.Event()
        running = asyncio.create_task(run_jobs(sessions, {KIND: Correction(sessions, 2, "", "")}, lane, stop))
        try:
            await asyncio.wait_for(finished.wait(), HANG_GUARD_SECONDS)
        finally:
            stop.set()
            await asyncio.wait_for(running, HANG_GUARD_SECONDS)
        assert started == ["a", "a"]
    finally:
        await engine.dispose()
