"""Background jobs: read a client's background from their own site's EHR (app/background.py), a few clients at
once; and the periodic check that queues the bounded re-read of clients in the community."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from service.app.background import BACKGROUND, fetch_background
from service.ehr.client import EhrClient
from service.settings import Settings
from service.store.claims import Claimed
from service.store.db import SessionFactory
from service.workers import retry
from service.workers.intake import SiteClients
from service.workers.jobs import JobReport, run_once

__all__ = ["BACKGROUND", "BackgroundJobs", "read_backgrounds"]


class BackgroundJobs:
    """One client's background per job. A category the EHR fails to answer is recorded as such (the summary
    marks it stale) and read again by the periodic refresh: the job itself is done, so an outage never piles up
    dead letters."""

    concurrency = 2

    def __init__(self, sessions: SessionFactory, readers: EhrClient | SiteClients, settings: Settings) -> None:
        self._sessions = sessions
        self._readers = readers
        self.limits = retry.Limits(settings.intake_max_backoff_seconds, settings.intake_max_attempts)

    async def prepare(self, jobs: Sequence[Claimed]) -> None:
        return None

    async def perform(self, job: Claimed) -> str | None:
        if job.site is None:
            raise retry.Permanent(f"background job {job.id} names no site")
        reader = self._readers if isinstance(self._readers, EhrClient) else await self._readers.client(job.site)
        report = await fetch_background(self._sessions, reader, job.subject_id)
        failed = ", ".join(c.value for c in report.failed)
        return f"{report.searches} searches; read {len(report.read)} categories" + (
            f"; failed {failed}" if failed else ""
        )

    async def settle(self, session: AsyncSession, done: Sequence[Claimed], now: datetime) -> None:
        return None


async def read_backgrounds(sessions: SessionFactory, readers: EhrClient | SiteClients, settings: Settings) -> JobReport:
    """Do one claim batch of due background jobs (no other kind): tests, tools and the demo."""
    return await run_once(sessions, {BACKGROUND: BackgroundJobs(sessions, readers, settings)}, settings)
