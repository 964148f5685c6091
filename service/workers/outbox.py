"""Outbox delivery: claim due rows, build the FHIR resources from current state, write them to the EHR.

Exactly-once in effect: the row is written with the change it announces; the EHR write is idempotent (PUT
with our stable id, or a conditional create on our identifier with duplicates resolved, see writeback.py), so
a row delivered twice after a crash changes nothing. Claims are leases under a claim token, renewed while the
worker holds them: a worker killed with -9 leaves its rows claimable again when the lease ends; one stopped
with SIGTERM finishes the rows in hand and gives the others back at once. On PostgreSQL any number of workers
claim with FOR UPDATE SKIP LOCKED; SQLite serialises writers, and the same single-statement claims keep it
exclusive there too. Failures follow retry.py: transient ones back off, permanent ones become dead letters.
Logs carry row and resource ids only, never a resource.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from service.app.clock import utcnow
from service.app.contacts import OUTBOX_CONTACT
from service.ehr.client import EhrClient
from service.errors import UpstreamError
from service.fhir import build
from service.settings import Settings
from service.store import delivery as store
from service.store.db import SessionFactory, transaction
from service.workers import retry
from service.workers.writeback import Undeliverable, Writer, WriteTargets

__all__ = ["DeliveryReport", "deliver_due", "run_worker"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeliveryReport:
    claimed: int = 0
    delivered: int = 0
    retrying: int = 0
    dead: int = 0
    released: int = 0  # given back unattempted because the worker was asked to stop


# What became of one row: written to the EHR (recorded with its batch), retrying, dead, lost (our lease lapsed
# and another worker holds it), or unstarted (the worker was asked to stop first).
_Result = Literal["written", "retrying", "dead", "lost", "unstarted"]


async def _claim(sessions: SessionFactory, settings: Settings, token: str) -> list[store.Claimed]:
    now = utcnow()
    async with transaction(sessions) as session:
        postgres = session.get_bind().dialect.name == "postgresql"
        return await store.claim(
            session,
            token,
            now,
            now + timedelta(seconds=settings.outbox_lease_seconds),
            settings.outbox_batch_size,
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
            except Exception as exc:  # the lease may lapse: another worker then delivers (idempotently)
                log.warning("could not renew the outbox lease: %s", type(exc).__name__)

    task = asyncio.create_task(renew())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _error_text(exc: UpstreamError) -> tuple[str, str | None]:
    outcome = build.to_json(exc.outcome) if exc.outcome else None
    return exc.diagnostics + (f"\n{outcome}" if outcome else ""), outcome


async def _write_one(
    sessions: SessionFactory, writer: Writer, settings: Settings, item: store.Claimed, token: str
) -> tuple[_Result, str | None]:
    """Write the row's resource to the EHR; a failure is recorded at once, a success with its batch."""
    try:
        note = await writer.deliver(item.kind, item.subject_id)
    except UpstreamError as exc:
        error, outcome = _error_text(exc)
        status, retry_after = exc.http_status, exc.retry_after
    except Undeliverable as exc:
        failed = await _record_failure(sessions, settings, item, token, str(exc), None, None, None, dead=True)
        return failed, None
    except Exception as exc:  # a fault of ours or of the database: retried, within the horizon, like an outage
        log.error("outbox row %s (%s): unexpected %s", item.id, item.kind, type(exc).__name__)
        error, outcome, status, retry_after = f"internal error: {type(exc).__name__}", None, None, None
    else:
        return "written", note
    return await _record_failure(sessions, settings, item, token, error, outcome, status, retry_after, dead=False), None


async def _record_written(sessions: SessionFactory, token: str, written: list[tuple[store.Claimed, str | None]]) -> int:
    """Mark the batch's written rows done in one transaction (a crash before it means a harmless redelivery)."""
    if not written:
        return 0
    now = utcnow()
    async with transaction(sessions) as session:
        done = set(await store.record_delivered(session, [item.id for item, _ in written], token, now))
        contacts = [item.subject_id for item, _ in written if item.id in done and item.kind == OUTBOX_CONTACT]
        await store.mark_contacts_delivered(session, contacts, now)
        for item, note in written:
            if note and item.id in done:
                await store.record_note(session, item.id, note)
    return len(done)  # the others' leases lapsed and another worker holds them: it delivers them again


async def _record_failure(
    sessions: SessionFactory,
    settings: Settings,
    item: store.Claimed,
    token: str,
    error: str,
    outcome: str | None,
    status: int | None,
    retry_after: float | None,
    *,
    dead: bool,
) -> _Result:
    now = utcnow()
    verdict = retry.decide(status, retry_after, item.attempts + 1, item.first_failed_at, now, settings)
    dead = dead or verdict.dead
    failure = store.Failure(
        dead=dead, available_at=verdict.next_attempt_at, http_status=status, error=error, outcome_json=outcome
    )
    async with transaction(sessions) as session:
        recorded = await store.record_failure(session, item, token, now, failure)
    if recorded:
        log.warning(
            "outbox row %s (%s %s): %s -> %s",
            item.id,
            item.kind,
            item.subject_id,
            error.split("\n", 1)[0],
            "dead letter" if dead else f"retry at {_instant(verdict.next_attempt_at)}",
        )
    if not recorded:
        return "lost"
    return "dead" if dead else "retrying"


def _instant(value: datetime) -> str:
    return value.isoformat(timespec="seconds")


async def deliver_due(
    sessions: SessionFactory,
    ehr: EhrClient | WriteTargets,
    settings: Settings,
    *,
    writer: Writer | None = None,
    stop: asyncio.Event | None = None,
) -> DeliveryReport:
    """Deliver one claim batch of due rows, outbox_concurrency at a time. Safe in any number of workers.

    When `stop` is set the rows in hand are finished and the rest of the batch is released unattempted. `ehr` is
    the EhrDirectory (each row goes to its client's site), or one EhrClient for every site.
    """
    writer = writer or Writer(sessions, ehr, settings)
    token = uuid.uuid4().hex
    claimed = await _claim(sessions, settings, token)
    if not claimed:
        return DeliveryReport()
    async with _lease_kept(sessions, settings, token):
        await writer.prefetch([(item.kind, item.subject_id) for item in claimed])
        gate = asyncio.Semaphore(max(1, settings.outbox_concurrency))

        async def attempt(item: store.Claimed) -> tuple[_Result, str | None]:
            async with gate:
                if stop is not None and stop.is_set():
                    return "unstarted", None
                return await _write_one(sessions, writer, settings, item, token)

        answers = await asyncio.gather(*(attempt(item) for item in claimed), return_exceptions=True)
        results: list[_Result] = []
        written: list[tuple[store.Claimed, str | None]] = []
        for item, answer in zip(claimed, answers, strict=True):
            if isinstance(answer, BaseException):  # the database failed us: the lease lapses, the row comes back
                log.error("outbox row %s: %s", item.id, type(answer).__name__)
                results.append("lost")
                continue
            results.append(answer[0])
            if answer[0] == "written":
                written.append((item, answer[1]))
        delivered = await _record_written(sessions, token, written)
        unstarted = [item.id for item, result in zip(claimed, results, strict=True) if result == "unstarted"]
        released = 0
        if unstarted:
            async with transaction(sessions) as session:
                released = await store.release(session, token, unstarted)
    return DeliveryReport(
        claimed=len(claimed),
        delivered=delivered,
        retrying=results.count("retrying"),
        dead=results.count("dead"),
        released=released,
    )


async def run_worker(
    sessions: SessionFactory, ehr: EhrClient | WriteTargets, settings: Settings, stop: asyncio.Event
) -> None:
    """Deliver until stopped: drain what is due, then wait for the next poll (or the stop signal)."""
    writer = Writer(sessions, ehr, settings)
    while not stop.is_set():
        try:
            report = await deliver_due(sessions, ehr, settings, writer=writer, stop=stop)
        except Exception as exc:  # keep the worker alive across a database hiccup; the rows stay claimable
            log.error("outbox delivery round failed: %s", type(exc).__name__)
            report = DeliveryReport()
        if report.claimed and not stop.is_set():
            continue
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=settings.outbox_poll_seconds)
