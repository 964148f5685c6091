"""Delivery to the EHR, as the program and its operators see it: the CareTeam queued with an assignment, dead
letters (of every kind of job: writes to the EHR and intake's reads from it) listed, replayed or discarded, the
queue's figures, and the public key the EHR registers for Peerway.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from service.app.clock import utcnow
from service.ehr import smart
from service.errors import Conflict, NotFound
from service.settings import Settings
from service.store import jobs as store
from service.store import sites as sites_store
from service.store.db import SessionFactory, transaction
from service.store.jobs import Job

OUTBOX_CARETEAM = "careteam"  # the client's CareTeam, queued with every change of an episode's peers (app/uow.py)


# --- dead letters --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeadLetter:
    id: int
    kind: str
    subject_id: str
    site: str | None
    attempts: int
    http_status: int | None
    error: str
    outcome: dict[str, Any] | None
    created_at: datetime
    failed_at: datetime | None


def _dead_letter(item: Job) -> DeadLetter:
    outcome: dict[str, Any] | None = None
    if item.outcome_json:
        try:
            parsed = json.loads(item.outcome_json)
        except ValueError:
            parsed = None
        outcome = parsed if isinstance(parsed, dict) else None
    return DeadLetter(
        id=item.id,
        kind=item.kind,
        subject_id=item.subject_id,
        site=item.site,
        attempts=item.attempts,
        http_status=item.last_status,
        error=(item.last_error or "").split("\n", 1)[0],
        outcome=outcome,
        created_at=item.created_at,
        failed_at=item.last_attempt_at,
    )


async def list_dead_letters(sessions: SessionFactory, site: str | None) -> Sequence[DeadLetter]:
    """Jobs the EHR refused for good (or that ran out of retries), oldest first, with the EHR's outcome: writes
    (contact, careteam) and intake's reads (fetch, patient, search, recover) alike; those of the site (a
    coordinator's view), or every site's (site None: the operator's command line)."""
    async with sessions() as session:
        return [_dead_letter(item) for item in await store.dead_letters(session, site)]


async def _dead_row(session: AsyncSession, item_id: int, site: str | None) -> Job:
    """The dead letter, locked; another site's row is "not found" exactly like a row that does not exist."""
    item = await store.job_for_update(session, item_id)
    if item is None or (site is not None and item.site != site):
        raise NotFound(f"no outbox row {item_id}")
    if item.status != store.DEAD:
        raise Conflict(f"outbox row {item_id} is {item.status}, not a dead letter")
    return item


async def replay_dead_letter(sessions: SessionFactory, item_id: int, site: str | None) -> DeadLetter:
    """Queue a dead letter again, due now, with a fresh retry horizon (after its cause has been fixed)."""
    async with transaction(sessions) as session:
        item = await _dead_row(session, item_id, site)
        item.status = store.PENDING
        item.available_at = utcnow()
        item.first_failed_at = None
        item.claimed_until = None
        item.claimed_by = None
    return _dead_letter(item)


async def discard_dead_letter(sessions: SessionFactory, item_id: int, site: str | None) -> None:
    """Give up on a dead letter: it stays on record as discarded and is never delivered."""
    async with transaction(sessions) as session:
        item = await _dead_row(session, item_id, site)
        item.status = store.DISCARDED
        item.done_at = utcnow()


# --- keeping the table to what is still of use ---------------------------------------------------------------

PURGE_BATCH = 1_000  # done jobs deleted per transaction: the SQLite write turn is held some 10 ms at a time


async def purge_done_jobs(sessions: SessionFactory, settings: Settings, now: datetime | None = None) -> int:
    """Delete the jobs done more than PEERWAY_OUTBOX_KEEP_DONE_DAYS ago (none when it is 0), a batch per
    transaction; answers how many. Their work is in the records they changed (a contact's delivery time, the
    client's background, the episode a hospital event moved); a done job only says when it happened. Pending jobs,
    dead letters and discarded jobs are never deleted here. Without it the table grew by every job ever done, and
    what reads it by status with it (`/metrics`: 1.5 s a scrape at 600,000 done jobs)."""
    if settings.outbox_keep_done_days <= 0:
        return 0
    before = (now or utcnow()) - timedelta(days=settings.outbox_keep_done_days)
    purged = 0
    while True:
        async with transaction(sessions) as session:
            deleted = await store.purge_done(session, before, PURGE_BATCH)
        purged += deleted
        if deleted < PURGE_BATCH:
            return purged


# --- figures and keys ------------------------------------------------------------------------------------------


async def queue_figures(sessions: SessionFactory) -> store.QueueFigures:
    """Jobs per kind, status and site, attempts made, the oldest pending one: counts only, never a resource."""
    async with sessions() as session:
        return await store.queue_figures(session)


def _public_jwk(path: str, kid: str | None) -> dict[str, Any] | None:
    try:
        modified = Path(path).stat().st_mtime_ns  # a key replaced in place is published anew
    except OSError:
        return None
    return _read_public_jwk(path, kid, modified)


@lru_cache(maxsize=64)
def _read_public_jwk(path: str, kid: str | None, modified: int) -> dict[str, Any] | None:
    try:
        return smart.load_signing_key(Path(path), kid).public_jwk()
    except (OSError, smart.SigningKeyError):  # a site's unreadable key is its own outage, not every site's
        return None


async def public_jwks(sessions: SessionFactory, settings: Settings) -> dict[str, Any]:
    """The public halves of Peerway's SMART Backend Services keys, as one JWK Set: the settings' key (site
    "default") and each active site's own, once each (an EHR picks its key by kid)."""
    keys: list[tuple[str, str | None]] = []
    if settings.ehr_private_key_path:
        keys.append((settings.ehr_private_key_path, settings.ehr_key_id))
    async with sessions() as session:
        keys += [
            (row.private_key_path, row.key_id)
            for row in await sites_store.sites(session)
            if row.status == "active" and row.private_key_path
        ]
    published: dict[str, dict[str, Any]] = {}
    for path, kid in dict.fromkeys(keys):
        jwk = _public_jwk(path, kid)
        if jwk is not None:
            published.setdefault(str(jwk.get("kid")), jwk)
    return {"keys": list(published.values())}
