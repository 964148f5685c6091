"""Intake jobs (fetch, patient, search, recover): the handler that reads each job's own site's EHR through
app/channels.py, and `process_inbox`, one claim batch of intake jobs only (tests, tools). The runner, claims and
retries: jobs.py and retry.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from service.app.channels import do_intake
from service.app.subscriptions import INTAKE_KINDS
from service.ehr.client import EhrClient
from service.settings import Settings
from service.store.claims import Claimed
from service.store.db import SessionFactory
from service.workers import retry
from service.workers.jobs import run_once

__all__ = ["INTAKE_KINDS", "InboxReport", "IntakeJobs", "SiteClients", "process_inbox"]


class SiteClients(Protocol):
    """Each site's EHR client (service/ehr/directory.py EhrDirectory)."""

    async def client(self, site: str) -> EhrClient: ...


class IntakeJobs:
    """Reads from the EHR, one at a time (as they always were), each from the EHR of the site whose
    notification queued it; one EhrClient given instead serves every site (single-EHR tests and tools)."""

    concurrency = 1

    def __init__(self, sessions: SessionFactory, readers: EhrClient | SiteClients, settings: Settings) -> None:
        self._sessions = sessions
        self._readers = readers
        self._settings = settings
        self.limits = retry.Limits(settings.intake_max_backoff_seconds, settings.intake_max_attempts)

    async def prepare(self, jobs: Sequence[Claimed]) -> None:
        return None

    async def perform(self, job: Claimed) -> str | None:
        if job.site is None:
            raise retry.Permanent(f"intake job {job.id} names no site")
        reader = self._readers if isinstance(self._readers, EhrClient) else await self._readers.client(job.site)
        await do_intake(self._sessions, reader, self._settings, job)
        return None  # what it did is in the episodes and the channel's health

    async def settle(self, session: AsyncSession, done: Sequence[Claimed], now: datetime) -> None:
        return None


@dataclass(frozen=True)
class InboxReport:
    claimed: int = 0
    done: int = 0
    retrying: int = 0
    dead: int = 0


async def process_inbox(sessions: SessionFactory, readers: EhrClient | SiteClients, settings: Settings) -> InboxReport:
    """Do one claim batch of due intake jobs (no other kind). Safe to run in any number of workers."""
    handler = IntakeJobs(sessions, readers, settings)
    report = await run_once(sessions, dict.fromkeys(INTAKE_KINDS, handler), settings)
    return InboxReport(report.claimed, report.done, report.retrying, report.dead)
