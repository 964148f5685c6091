"""Delivery jobs (contact, careteam): the handler that builds each FHIR resource from current state and writes
it to its client's EHR (writeback.py), and `deliver_due`, one claim batch of delivery jobs only (the `deliver`
command, tests). The runner, claims and retries: jobs.py and retry.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from service.app.alerts import OUTBOX_FLAG
from service.app.contacts import OUTBOX_CONTACT
from service.app.delivery import OUTBOX_CARETEAM
from service.ehr.client import EhrClient
from service.settings import Settings
from service.store import delivery
from service.store.claims import Claimed
from service.store.db import SessionFactory
from service.workers import retry
from service.workers.jobs import run_once
from service.workers.writeback import Writer, WriteTargets

__all__ = ["DELIVERY_KINDS", "DeliveryJobs", "DeliveryReport", "deliver_due"]

DELIVERY_KINDS = frozenset({OUTBOX_CONTACT, OUTBOX_CARETEAM, OUTBOX_FLAG})


class DeliveryJobs:
    """Writes to the EHR, outbox_concurrency at a time; a contact is marked delivered with its job."""

    def __init__(self, writer: Writer, settings: Settings) -> None:
        self._writer = writer
        self.concurrency = settings.outbox_concurrency
        self.limits = retry.Limits(settings.outbox_max_backoff_seconds)

    async def prepare(self, jobs: Sequence[Claimed]) -> None:
        await self._writer.prefetch([(job.kind, job.subject_id) for job in jobs])

    async def perform(self, job: Claimed) -> str | None:
        return await self._writer.deliver(job.kind, job.subject_id)

    async def settle(self, session: AsyncSession, done: Sequence[Claimed], now: datetime) -> None:
        contacts = [job.subject_id for job in done if job.kind == OUTBOX_CONTACT]
        await delivery.mark_contacts_delivered(session, contacts, now)


@dataclass(frozen=True)
class DeliveryReport:
    claimed: int = 0
    delivered: int = 0
    retrying: int = 0
    dead: int = 0
    released: int = 0  # given back unattempted because the worker was asked to stop


async def deliver_due(
    sessions: SessionFactory,
    ehr: EhrClient | WriteTargets,
    settings: Settings,
    *,
    writer: Writer | None = None,
    stop: asyncio.Event | None = None,
) -> DeliveryReport:
    """Deliver one claim batch of due delivery jobs (no other kind). Safe in any number of workers.

    `ehr` is the EhrDirectory (each job goes to its client's site), or one EhrClient for every site.
    """
    handler = DeliveryJobs(writer or Writer(sessions, ehr, settings), settings)
    report = await run_once(sessions, dict.fromkeys(DELIVERY_KINDS, handler), settings, stop=stop)
    return DeliveryReport(report.claimed, report.done, report.retrying, report.dead, report.released)
