"""What a worker runs: every kind of job through one registry (kind -> handler) and the periodic safety-net
checks, in one loop (jobs.run_jobs).

`peerway worker` (command.py) runs it until SIGTERM, as many processes as wanted; the API process runs one as a
task of its own when PEERWAY_RUN_WORKER is true (service/main.py's lifespan), and none otherwise: an API process
only writes jobs, and needs no worker of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Protocol

from service.app.alerts import run_safety_net
from service.app.background import queue_refreshes
from service.app.channels import check_channels
from service.app.delivery import purge_done_jobs
from service.ehr.client import EhrClient
from service.settings import Settings
from service.store.db import SessionFactory
from service.workers.background import BACKGROUND, BackgroundJobs
from service.workers.intake import INTAKE_KINDS, IntakeJobs, SiteClients
from service.workers.jobs import Handler, Periodic, Registry, run_jobs
from service.workers.outbox import DELIVERY_KINDS, DeliveryJobs
from service.workers.writeback import Writer, WriteTargets

log = logging.getLogger(__name__)
STOP_SECONDS = 30.0  # how long a stopping API process waits for the jobs in hand
PURGE_EVERY_SECONDS = 3600.0  # how often a worker deletes the jobs done longer ago than they are kept


class SiteEhrs(WriteTargets, SiteClients, Protocol):
    """Each site's EHR client and write mode (service/ehr/directory.py EhrDirectory)."""


def registry(sessions: SessionFactory, ehr: EhrClient | SiteEhrs, settings: Settings) -> Registry:
    """Every kind of job and its handler: writes to the EHR, reads from it."""
    delivery: Handler = DeliveryJobs(Writer(sessions, ehr, settings), settings)
    intake: Handler = IntakeJobs(sessions, ehr, settings)
    background: Handler = BackgroundJobs(sessions, ehr, settings)
    return dict.fromkeys(DELIVERY_KINDS, delivery) | dict.fromkeys(INTAKE_KINDS, intake) | {BACKGROUND: background}


def periodic_checks(sessions: SessionFactory, settings: Settings) -> list[Periodic]:
    """The safety nets: channels that went silent get a recovery queued (app/channels.py); clients and peers
    the program may be losing raise alerts, which close when the condition ends (app/alerts.py); clients in the
    community whose background is old get a bounded re-read queued (app/background.py). And the housekeeping:
    jobs done longer ago than PEERWAY_OUTBOX_KEEP_DONE_DAYS are deleted, hourly (app/delivery.py)."""

    async def silent_channels() -> object:
        return await check_channels(sessions, settings)

    async def safety_net() -> object:
        return await run_safety_net(sessions, settings)

    async def old_background() -> object:
        return await queue_refreshes(sessions)

    async def old_jobs() -> object:
        return await purge_done_jobs(sessions, settings)

    return [
        Periodic("check_channels", settings.intake_poll_seconds, silent_channels),
        Periodic("safety_net", settings.safety_net_seconds, safety_net),
        Periodic("refresh_background", max(settings.intake_poll_seconds, 60.0), old_background),
        Periodic("purge_done_jobs", PURGE_EVERY_SECONDS, old_jobs),
    ]


async def run(
    sessions: SessionFactory,
    ehr: EhrClient | SiteEhrs,
    settings: Settings,
    stop: asyncio.Event,
    wake: asyncio.Event | None = None,
) -> None:
    """Every job and check until `stop` is set; the jobs in hand are finished, the rest given back."""
    await run_jobs(
        sessions,
        registry(sessions, ehr, settings),
        settings,
        stop,
        wake=wake,
        periodic=periodic_checks(sessions, settings),
    )


class BackgroundWorker:
    """The worker as a task of this process. `wake` makes it look for due jobs at once (new work was queued)."""

    def __init__(self, sessions: SessionFactory, ehr: EhrClient | SiteEhrs, settings: Settings) -> None:
        self.wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(run(sessions, ehr, settings, self._stop, self.wake))

    async def stop(self) -> None:
        """Finish the jobs in hand and give the rest back (at most STOP_SECONDS, then the task is cancelled and
        its jobs come back when their lease ends)."""
        self._stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            try:
                await asyncio.wait_for(self._task, timeout=STOP_SECONDS)
            except TimeoutError:
                log.warning("the worker did not stop in %.0f s; its jobs come back when their lease ends", STOP_SECONDS)
