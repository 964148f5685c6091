"""`peerway worker` (a standalone worker process: every kind of job and the periodic checks) and `peerway
dead-letters` (operators' view of what the EHR refused, for every kind of job)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable

from service.app import delivery
from service.app.sites import site_directory
from service.errors import PeerwayError
from service.settings import Settings
from service.store.db import SessionFactory, create_engine, session_factory
from service.workers import worker

log = logging.getLogger("service.workers")


Beside = Callable[[SessionFactory, asyncio.Event], Awaitable[None]]


async def _work(settings: Settings, beside: Beside | None = None) -> int:
    engine = create_engine(settings.database_url)
    sessions = session_factory(engine)
    ehr = site_directory(sessions, settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    log.info("peerway worker %s: jobs for each site's EHR (writes, reads, recovery) and channel checks", os.getpid())
    try:
        if beside is None:
            await worker.run(sessions, ehr, settings, stop)
        else:  # e.g. the MLLP listener (`peerway worker --mllp`), stopped by the same signal
            await asyncio.gather(worker.run(sessions, ehr, settings, stop), beside(sessions, stop))
    finally:
        await ehr.aclose()
        await engine.dispose()
    log.info("peerway worker %s stopped; jobs in hand were finished or released", os.getpid())
    return 0


def work(settings: Settings, beside: Beside | None = None) -> int:
    """Work until SIGTERM (or SIGINT); then finish the jobs in hand, release the rest and exit 0. `beside` runs in
    the same process until the same signal."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request is noise (and names the ids)
    return asyncio.run(_work(settings, beside))


async def _dead_letters(settings: Settings, action: str, item_id: int | None, site: str | None) -> int:
    engine = create_engine(settings.database_url)
    sessions = session_factory(engine)
    try:
        if action == "list":
            for letter in await delivery.list_dead_letters(sessions, site):
                print(
                    json.dumps(
                        {
                            "id": letter.id,
                            "kind": letter.kind,
                            "subject_id": letter.subject_id,
                            "site": letter.site,
                            "attempts": letter.attempts,
                            "http_status": letter.http_status,
                            "failed_at": letter.failed_at.isoformat() if letter.failed_at else None,
                            "error": letter.error,
                            "outcome": letter.outcome,
                        }
                    )
                )
        elif action == "replay":
            assert item_id is not None
            await delivery.replay_dead_letter(sessions, item_id, site)
            print(
                f"job {item_id} queued again: a running worker (`peerway worker`, or serve's own) tries it now;"
                " `peerway dead-letters list` shows it again if it fails for good"
            )
        else:
            assert item_id is not None
            await delivery.discard_dead_letter(sessions, item_id, site)
            print(f"job {item_id} discarded")
    except PeerwayError as exc:
        print(exc.diagnostics, file=sys.stderr)
        return 1
    finally:
        await engine.dispose()
    return 0


def dead_letters(settings: Settings, action: str, item_id: int | None, site: str | None = None) -> int:
    """list (one JSON object a line, with the EHR's OperationOutcome) | replay ID | discard ID, for every kind of
    job (contact, careteam, fetch, patient, search, recover); every site's, or only those of `site` (a job of
    another site is then "not found")."""
    return asyncio.run(_dead_letters(settings, action, item_id, site))
