"""The one job runner: claim due jobs of the registered kinds, hand each to its kind's handler, record what became
of it; beside that, run the periodic safety-net checks; sleep until the next poll or a wake-up.

Exactly-once in effect: a job is written with the change it follows from, and every handler's work is
idempotent (an EHR write with our stable id or identifier, see writeback.py; an EHR read applied as current
state, see app/channels.py), so a job done twice after a crash changes nothing. Claims are leases under a claim
token, renewed while the worker holds them: a worker killed with -9 leaves its jobs claimable again when the
lease ends; one asked to stop finishes the jobs in hand and gives the others back at once. On PostgreSQL any
number of workers claim with FOR UPDATE SKIP LOCKED; SQLite serialises writers, and the same single-statement
claims keep it exclusive there too. Failures follow retry.py. Logs carry job ids, kinds and statuses, never a
resource.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from service.app.clock import utcnow
from service.settings import Settings
from service.store import claims
from service.store import jobs as store
from service.store.db import SessionFactory, engine_of, transaction
from service.workers import retry

log = logging.getLogger(__name__)


class Handler(Protocol):
    """Does the jobs of some kinds. `concurrency` of them are worked on at once within a claimed batch."""

    @property
    def concurrency(self) -> int: ...

    @property
    def limits(self) -> retry.Limits: ...

    async def prepare(self, jobs: Sequence[claims.Claimed]) -> None:
        """Read what the batch's jobs need at once, or do their work at once (delivery in the batch write mode;
        each job's perform then reports its own part). A failure here fails no job: the runner logs it, and each
        job does what it needs afresh (as does a job not done from this read)."""

    async def perform(self, job: claims.Claimed) -> str | None:
        """Do the job; answers a note kept with it (or None). Raises when it failed (retry.failure_of)."""

    async def settle(self, session: AsyncSession, done: Sequence[claims.Claimed], now: datetime) -> None:
        """In the transaction that marks them done: what else their being done changes."""


Registry = Mapping[str, Handler]  # kind -> handler


@dataclass(frozen=True)
class JobReport:
    claimed: int = 0
    done: int = 0
    retrying: int = 0
    dead: int = 0
    released: int = 0  # given back unattempted because the worker was asked to stop


# What became of one job: done (recorded with its batch), retrying, dead, lost (our lease lapsed and another
# worker holds it), or unstarted (the worker was asked to stop first).
_Result = Literal["done", "retrying", "dead", "lost", "unstarted"]


async def _claim(
    sessions: SessionFactory, settings: Settings, token: str, kinds: Collection[str], *, probe: bool = True
) -> list[claims.Claimed]:
    """Lease a batch; `probe` first looks with a read whether anything is due, so that an idle worker's poll takes
    no write lock (a worker whose last batch was full skips it: more is very likely due)."""
    now = utcnow()
    if probe and not await store.any_due(engine_of(sessions), now, kinds):
        return []
    async with transaction(sessions) as session:
        postgres = session.get_bind().dialect.name == "postgresql"
        return await claims.claim(
            session,
            token,
            now,
            now + timedelta(seconds=settings.outbox_lease_seconds),
            settings.outbox_batch_size,
            kinds,
            skip_locked=postgres,
        )


@contextlib.asynccontextmanager
async def _lease_kept(sessions: SessionFactory, settings: Settings, token: str) -> AsyncIterator[None]:
    """Renew the claim's lease while the batch is worked on (a slow EHR must not let it lapse)."""

    async def renew() -> None:
        interval = settings.outbox_lease_seconds / 3
        while True:
            await asyncio.sleep(interval)
            try:
                async with transaction(sessions) as session:
                    await store.renew_lease(session, token, utcnow() + timedelta(seconds=settings.outbox_lease_seconds))
            except Exception as exc:  # the lease may lapse: another worker then does the job (idempotently)
                log.warning("could not renew the job lease: %s", type(exc).__name__)

    task = asyncio.create_task(renew())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _attempt(
    sessions: SessionFactory, settings: Settings, handler: Handler, job: claims.Claimed, token: str
) -> tuple[_Result, str | None]:
    """Do the job; a failure is recorded at once, a success with its batch."""
    try:
        note = await handler.perform(job)
    except Exception as exc:  # one job's failure never holds up the others
        return await _record_failure(sessions, settings, handler, job, token, retry.failure_of(exc)), None
    return "done", note


async def _record_failure(
    sessions: SessionFactory,
    settings: Settings,
    handler: Handler,
    job: claims.Claimed,
    token: str,
    failed: retry.Failed,
) -> _Result:
    if failed.unexpected:
        log.error("job %s (%s): %s", job.id, job.kind, failed.summary)
    now = utcnow()
    verdict = retry.decide(
        failed.http_status, failed.retry_after, job.attempts + 1, job.first_failed_at, now, settings, handler.limits
    )
    dead = failed.permanent or verdict.dead
    failure = store.Failure(
        dead=dead,
        available_at=verdict.next_attempt_at,
        http_status=failed.http_status,
        error=failed.error,
        outcome_json=failed.outcome_json,
    )
    async with transaction(sessions) as session:
        recorded = await store.record_failure(session, job.id, token, now, failure)
    if not recorded:
        return "lost"
    after = "dead letter" if dead else f"retry at {verdict.next_attempt_at.isoformat(timespec='seconds')}"
    log.warning("job %s (%s): %s -> %s", job.id, job.kind, failed.summary, after)
    return "dead" if dead else "retrying"


# Jobs whose subject is an id of Peerway's own (a contact, an episode's CareTeam): safe to name in the log. The
# intake jobs' subjects are the EHR's ids, named by the job id only.
OWN_SUBJECTS = {"contact": "contact", "careteam": "CareTeam of episode"}


def _log_done(job: claims.Claimed) -> None:
    """One line per job done, ids only: for a delivery, what reached which site's EHR."""
    site = job.site or "default"
    if job.kind in OWN_SUBJECTS:
        log.info("delivered %s %s to site %s's EHR (job %s)", OWN_SUBJECTS[job.kind], job.subject_id, site, job.id)
    else:
        log.info("job %s (%s, site %s) done", job.id, job.kind, site)


async def _record_done(
    sessions: SessionFactory, registry: Registry, token: str, done: list[tuple[claims.Claimed, str | None]]
) -> int:
    """Mark the batch's done jobs in one transaction (a crash before it means a harmless second run)."""
    if not done:
        return 0
    now = utcnow()
    async with transaction(sessions) as session:
        held = set(await store.record_done(session, [job.id for job, _ in done], token, now))
        by_handler: dict[Handler, list[claims.Claimed]] = {}
        for job, note in done:
            if job.id in held:
                _log_done(job)
                by_handler.setdefault(registry[job.kind], []).append(job)
                if note:
                    await store.record_note(session, job.id, note)
        for handler, jobs in by_handler.items():
            await handler.settle(session, jobs, now)
    return len(held)  # the others' leases lapsed and another worker holds them: it does them again


class Round:
    """How far a round of run_once has got, for a runner that overlaps rounds (run_jobs' lanes): `started` is set
    once no more of the claimed jobs wait for a place than one handler's concurrency (or the round ended);
    `claimed` says how many there were.
    """

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.claimed = 0


async def run_once(
    sessions: SessionFactory,
    registry: Registry,
    settings: Settings,
    *,
    stop: asyncio.Event | None = None,
    gates: dict[Handler, asyncio.Semaphore] | None = None,
    progress: Round | None = None,
    probe: bool = True,
) -> JobReport:
    """Do one claim batch of due jobs of the registry's kinds. Safe in any number of workers.

    Each handler works on `concurrency` of its jobs at once (per round, or across the rounds that share `gates`).
    When `stop` is set the jobs in hand are finished and the rest of the batch is released unattempted.
    """
    progress = progress or Round()
    try:
        return await _round(sessions, registry, settings, stop, gates if gates is not None else {}, progress, probe)
    finally:
        progress.started.set()


async def _round(
    sessions: SessionFactory,
    registry: Registry,
    settings: Settings,
    stop: asyncio.Event | None,
    gates: dict[Handler, asyncio.Semaphore],
    progress: Round,
    probe: bool,
) -> JobReport:
    token = uuid.uuid4().hex
    claimed = await _claim(sessions, settings, token, registry.keys(), probe=probe)
    progress.claimed = len(claimed)
    if not claimed:
        return JobReport()
    async with _lease_kept(sessions, settings, token):
        batches: dict[Handler, list[claims.Claimed]] = {}
        for job in claimed:
            batches.setdefault(registry[job.kind], []).append(job)
        for handler, jobs in batches.items():
            try:
                await handler.prepare(jobs)
            except Exception as exc:  # a read not made: each job reads what it needs afresh (Handler.prepare)
                log.error("preparing %d jobs failed: %s", len(jobs), type(exc).__name__)
            gates.setdefault(handler, asyncio.Semaphore(max(1, handler.concurrency)))
        # The next round is claimed once no more than one handful of this one's jobs wait for a place: its claim
        # and read then happen while the last jobs of this one are still to be done, and its jobs are queued on
        # the gates before those places come free.
        waiting = len(claimed)
        soon = max(max(1, handler.concurrency) for handler in batches)
        if waiting <= soon:
            progress.started.set()

        async def attempt(job: claims.Claimed) -> tuple[_Result, str | None]:
            nonlocal waiting
            handler = registry[job.kind]
            async with gates[handler]:
                waiting -= 1
                if waiting <= soon:
                    progress.started.set()
                if stop is not None and stop.is_set():
                    return "unstarted", None
                return await _attempt(sessions, settings, handler, job, token)

        answers = await asyncio.gather(*(attempt(job) for job in claimed), return_exceptions=True)
        results: list[_Result] = []
        done: list[tuple[claims.Claimed, str | None]] = []
        for job, answer in zip(claimed, answers, strict=True):
            if isinstance(answer, BaseException):  # the database failed us: the lease lapses, the job comes back
                log.error("job %s (%s): %s", job.id, job.kind, type(answer).__name__)
                results.append("lost")
                continue
            results.append(answer[0])
            if answer[0] == "done":
                done.append((job, answer[1]))
        recorded = await _record_done(sessions, registry, token, done)
        unstarted = [job.id for job, result in zip(claimed, results, strict=True) if result == "unstarted"]
        released = 0
        if unstarted:
            async with transaction(sessions) as session:
                released = await store.release(session, token, unstarted)
    return JobReport(
        claimed=len(claimed),
        done=recorded,
        retrying=results.count("retrying"),
        dead=results.count("dead"),
        released=released,
    )


@dataclass(frozen=True)
class Periodic:
    """A safety-net check the runner makes every `every_seconds` (channels gone silent, ...)."""

    name: str
    every_seconds: float
    check: Callable[[], Awaitable[object]]


async def run_jobs(
    sessions: SessionFactory,
    registry: Registry,
    settings: Settings,
    stop: asyncio.Event,
    *,
    wake: asyncio.Event | None = None,
    periodic: Sequence[Periodic] = (),
) -> None:
    """Work until stopped: every due job, the periodic checks when due, and in between wait for the next poll, a
    wake-up (`wake`: new work was queued in this process; on PostgreSQL also a job that became claimable in any
    process, `_listen`) or the stop signal.

    Each handler's kinds are claimed in a lane of their own (the same claims, retries and records), so a slow EHR
    read (a recovery paging through a search) never holds up the writes, nor a slow write the reads. One poll
    every outbox_poll_seconds looks, in one statement, whether any idle lane has work due, and wakes those that do
    (before, each idle lane polled on its own: three queries a poll, and the busiest worker paid them all).
    """
    grouped: dict[Handler, dict[str, Handler]] = {}
    for kind, handler in registry.items():
        grouped.setdefault(handler, {})[kind] = handler
    lanes = [Lane(kinds) for kinds in grouped.values()]
    work = [_lane(sessions, lane, settings, stop) for lane in lanes]
    await asyncio.gather(
        *work,
        _poll(sessions, lanes, settings, stop),
        _listen(sessions, lanes, settings, stop),
        _checks(periodic, stop),
        _relay(wake, [lane.nudge for lane in lanes], stop),
    )


class Lane:
    """The kinds one handler does, whether its loop is waiting for work, and the event that ends the wait."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.nudge = asyncio.Event()
        self.idle = False


async def _poll(sessions: SessionFactory, lanes: Sequence[Lane], settings: Settings, stop: asyncio.Event) -> None:
    """Every outbox_poll_seconds, one look for due work of the lanes that wait; those that have some are woken."""
    while not stop.is_set():
        await _idle(stop, None, settings.outbox_poll_seconds)
        waiting = [lane for lane in lanes if lane.idle and not lane.nudge.is_set()]
        if not waiting or stop.is_set():
            continue
        try:
            due = await store.due_among(engine_of(sessions), utcnow(), [lane.registry.keys() for lane in waiting])
        except Exception as exc:  # the next poll tries again
            log.error("poll for due jobs failed: %s", type(exc).__name__)
            continue
        for lane, has_work in zip(waiting, due, strict=True):
            if has_work:
                lane.nudge.set()


LISTEN_RETRY_SECONDS = (1.0, 30.0)  # first and longest wait before listening again after a failure
LISTEN_STEADY_SECONDS = 60.0  # a connection that lasted this long was no failure: the next wait is the first again


async def _listen(sessions: SessionFactory, lanes: Sequence[Lane], settings: Settings, stop: asyncio.Event) -> None:
    """PostgreSQL: a job that becomes claimable in any process (queued by an API process or the MLLP listener,
    given back by a stopping worker, a dead letter replayed) wakes the lanes of its kind when its transaction
    commits (LISTEN on a connection of its own; migration 0017's trigger notifies). Without it a `peerway worker`
    beside API processes found their jobs at its next poll, outbox_poll_seconds (1 s by default) later. The poll
    stays the guarantee: it finds retries whose time came, and everything while the listening connection is
    down. SQLite has no way to tell another process: nothing to do there; nor with PEERWAY_OUTBOX_LISTEN false
    (behind PgBouncer's transaction mode, where LISTEN does not work)."""
    engine = engine_of(sessions)
    if not settings.outbox_listen or not store.can_signal(engine):
        return
    lanes_of = {kind: lane for lane in lanes for kind in lane.registry}

    def heard(kind: str) -> None:
        lane = lanes_of.get(kind)
        if lane is not None:
            lane.nudge.set()

    retry_in = LISTEN_RETRY_SECONDS[0]
    while not stop.is_set():
        try:
            async with store.job_signals(engine, heard) as lost:
                since = time.monotonic()
                for lane in lanes:  # what was queued while nobody listened
                    lane.nudge.set()
                await _idle(stop, lost, None)
            if time.monotonic() - since >= LISTEN_STEADY_SECONDS:
                retry_in = LISTEN_RETRY_SECONDS[0]
            if not stop.is_set():
                log.warning("the connection listening for jobs was lost; the poll finds them until it is back")
        except Exception as exc:  # the poll finds the jobs meanwhile
            log.warning("could not listen for jobs (%s); the poll finds them meanwhile", type(exc).__name__)
        # Not every process at the same moment after a restart of the server.
        await _idle(stop, None, retry_in * random.uniform(0.5, 1.0))  # noqa: S311 - spreading, not secrecy
        retry_in = min(retry_in * 2, LISTEN_RETRY_SECONDS[1])


PIPELINE_DEPTH = 2  # claim rounds a lane works on at once: the next is claimed while the last jobs are in flight


async def _lane(sessions: SessionFactory, this: Lane, settings: Settings, stop: asyncio.Event) -> None:
    """Rounds of run_once, overlapped: once no more of a round's jobs wait than it has places, the next round is
    claimed and prepared, its jobs waiting on the same gates (each handler's `concurrency` holds across rounds),
    while the first finishes and records what it did. So the EHR always has `concurrency` writes to answer, not a
    batch's tail, and the claim and the record of each round cost no time with nothing in flight. Overlapping
    rounds are like two workers: the claim never gives out a row while an older one of its subject is pending, so
    the order holds."""
    lane, nudge = this.registry, this.nudge
    gates: dict[Handler, asyncio.Semaphore] = {}
    rounds: set[asyncio.Task[JobReport]] = set()
    full = False  # the last round claimed a whole batch: claim again without looking first
    try:
        while not stop.is_set():
            nudge.clear()  # what is queued from here on ends the wait below
            progress = Round()
            task = asyncio.create_task(
                run_once(sessions, lane, settings, stop=stop, gates=gates, progress=progress, probe=not full)
            )
            rounds.add(task)
            await progress.started.wait()
            full = progress.claimed >= settings.outbox_batch_size
            if progress.claimed:
                # When it has recorded its jobs, jobs waiting behind them (a correction after its contact) are
                # due: the lane looks again then, not a poll later.
                task.add_done_callback(lambda _round: nudge.set())
            if not progress.claimed:
                await asyncio.wait({task})
            rounds = _reap(rounds, lane)
            while len(rounds) >= PIPELINE_DEPTH:
                await asyncio.wait(rounds, return_when=asyncio.FIRST_COMPLETED)
                rounds = _reap(rounds, lane)
            if progress.claimed and not stop.is_set():
                continue
            this.idle = True  # until _poll finds work due for it, a wake-up, or the stop signal
            try:
                await _idle(stop, nudge, None)
            finally:
                this.idle = False
    except asyncio.CancelledError:
        for task in rounds:
            task.cancel()
        raise
    finally:
        await asyncio.gather(*rounds, return_exceptions=True)  # the jobs in hand are finished (or released)
        _reap(rounds, lane)


def _reap(rounds: set[asyncio.Task[JobReport]], lane: Registry) -> set[asyncio.Task[JobReport]]:
    """The rounds still running; a round that failed is logged (its jobs stay claimable when its lease ends)."""
    for task in rounds:
        if task.done() and not task.cancelled() and task.exception() is not None:
            error = task.exception()
            log.error("job round (%s) failed: %s", ", ".join(sorted(lane)), type(error).__name__)
    return {task for task in rounds if not task.done()}


async def _checks(periodic: Sequence[Periodic], stop: asyncio.Event) -> None:
    due = [0.0] * len(periodic)  # time.monotonic() at which each check is next due
    while periodic and not stop.is_set():
        for n, check in enumerate(periodic):
            if time.monotonic() >= due[n]:
                due[n] = time.monotonic() + check.every_seconds
                try:
                    await check.check()
                except Exception as exc:  # the next round tries again
                    log.error("%s failed: %s", check.name, type(exc).__name__)
        await _idle(stop, None, max(0.0, min(due) - time.monotonic()))


async def _relay(wake: asyncio.Event | None, nudges: Sequence[asyncio.Event], stop: asyncio.Event) -> None:
    """Pass a wake-up on to every lane (each clears its own when it starts a round)."""
    while wake is not None and not stop.is_set():
        await _idle(stop, wake, None)
        wake.clear()
        for nudge in nudges:
            nudge.set()


async def _idle(stop: asyncio.Event, wake: asyncio.Event | None, seconds: float | None) -> None:
    waits = [asyncio.ensure_future(event.wait()) for event in (stop, wake) if event is not None]
    try:
        await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiting in waits:
            waiting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await waiting
