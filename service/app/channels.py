"""Subscription channels: the intake worker that reads the EHR for id-only, empty and missed events, the
watch for silent channels (channel health: app/notifications.py; Peerway's own
Subscription: app/own_subscription.py).

Why an inbox and a worker rather than fetching inline before the transaction: the EHR's sender waits on our
answer, and a slow or failing read would either hold it (and its retries pile up) or lose the event when we
answer 5xx and the sender gives up. Instead the notification's transaction writes the work (ids, no payload)
next to its other effects and answers 2xx; the worker reads the EHR between transactions, retries with
backoff, and leaves a dead letter visible in the channel's health when the EHR refuses for good.

Recovery of missed events (a gap in event numbers, or a silent channel) is app/recovery.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

from service.app.clock import utcnow
from service.app.intake import apply_stay
from service.app.linking import record_identifiers
from service.app.recovery import in_unit_of_work, read_stay, recover, search_changes
from service.app.subscriptions import queue_recovery
from service.app.uow import UnitOfWork
from service.ehr.client import EhrClient
from service.errors import PeerwayError, UpstreamError
from service.fhir.ehr_answers import patient_json
from service.fhir.subscription import reference_tail
from service.settings import Settings
from service.store import channel as store
from service.store import repository
from service.store.db import SessionFactory, transaction

log = logging.getLogger(__name__)
PERMANENT = frozenset({400, 403, 404, 405, 410, 422})
BATCH = 20


class SiteClients(Protocol):
    """Each site's EHR client (service/ehr/directory.py EhrDirectory)."""

    async def client(self, site: str) -> EhrClient: ...


@dataclass(frozen=True)
class InboxReport:
    claimed: int = 0
    done: int = 0
    retrying: int = 0
    dead: int = 0


# --- the worker ----------------------------------------------------------------------------------------------


async def process_inbox(sessions: SessionFactory, readers: EhrClient | SiteClients, settings: Settings) -> InboxReport:
    """Do every due inbox item once (one claim batch). Safe to run in any number of workers.

    Each item is read from the EHR of its own site (the site whose credentials its notification carried); one
    EhrClient given instead serves every site (single-EHR tests and tools).
    """
    now = utcnow()
    async with transaction(sessions) as session:
        ids = await store.claim_due(session, now, now + timedelta(seconds=settings.intake_lease_seconds), BATCH)
    done = retrying = dead = 0
    for item_id in ids:
        async with sessions() as session:
            item = await session.get(store.InboxItem, item_id)
        if item is None or item.status != "pending":
            continue
        try:
            reader = readers if isinstance(readers, EhrClient) else await readers.client(item.site)
            await _work(sessions, reader, settings, item)
        except Exception as exc:  # one item's failure never holds up the others
            permanent, wait, why = _verdict(exc, item, settings)
            await _failed(sessions, item_id, why, permanent, wait, settings)
            # The reason (kept on the row) may quote the EHR's data; the log names the kind of failure only.
            kind = type(exc).__name__
            if isinstance(exc, UpstreamError):
                kind = f"EHR answered {exc.http_status}" if exc.http_status else "EHR unreachable"
            log.warning("intake item %s (%s): %s (%s)", item_id, item.kind, kind, "dead" if permanent else "retry")
            dead, retrying = (dead + 1, retrying) if permanent else (dead, retrying + 1)
            continue
        async with transaction(sessions) as session:
            row = await session.get(store.InboxItem, item_id)
            assert row is not None
            row.status, row.done_at, row.claimed_until = "done", utcnow(), None
            row.attempts += 1
            row.last_error = None
        done += 1
    return InboxReport(claimed=len(ids), done=done, retrying=retrying, dead=dead)


def _verdict(exc: Exception, item: store.InboxItem, settings: Settings) -> tuple[bool, float | None, str]:
    """(give up for good?, seconds the EHR asked us to wait, why) for a failed inbox item."""
    exhausted = item.attempts + 1 >= settings.intake_max_attempts
    if isinstance(exc, UpstreamError):  # the EHR: refusals are final, the rest is retried with backoff
        return exc.http_status in PERMANENT or exhausted, exc.retry_after, exc.diagnostics
    if isinstance(exc, PeerwayError):  # what the EHR answered is not a resource we can read: final
        return True, None, f"unreadable answer from the EHR at {exc.expression}: {exc.diagnostics}"
    return exhausted, None, f"unexpected {type(exc).__name__}"  # e.g. the database: try again later


async def _failed(
    sessions: SessionFactory, item_id: int, error: str, permanent: bool, wait: float | None, settings: Settings
) -> None:
    async with transaction(sessions) as session:
        row = await session.get(store.InboxItem, item_id)
        assert row is not None
        row.attempts += 1
        row.claimed_until = None
        row.last_error = error[:2000]
        if permanent:
            row.status = "dead"
        else:
            cap = settings.intake_max_backoff_seconds
            backoff = random.uniform(0.5, 1.0) * min(cap, 2.0 ** min(row.attempts, 30))  # noqa: S311 - jitter
            row.available_at = utcnow() + timedelta(seconds=min(wait if wait is not None else backoff, cap))


async def _work(sessions: SessionFactory, reader: EhrClient, settings: Settings, item: store.InboxItem) -> str:
    if item.kind == "fetch":
        return await _fetch(sessions, reader, settings, item)
    if item.kind == "patient":
        return await _refresh_patient(sessions, reader, item)
    if item.kind == "search":
        assert item.since is not None
        found = await search_changes(sessions, reader, settings, item.site, item.channel_id, item.since)
        return f"{found} changed Encounter(s) applied"
    if item.kind == "recover":
        return await recover(sessions, reader, settings, item)
    raise UpstreamError(f"unknown intake work {item.kind!r}", http_status=400)


async def _fetch(sessions: SessionFactory, reader: EhrClient, settings: Settings, item: store.InboxItem) -> str:
    """An id-only event: read the focus Encounter and its Patient, then apply them like a full resource."""
    tail = reference_tail(item.focus)
    assert tail is not None
    stay = await read_stay(reader, settings, tail[1])

    async def apply(uow: UnitOfWork) -> str:
        event = None
        if item.channel_id is not None and item.event_number is not None:
            event = await uow.session.get(store.ChannelEvent, (item.channel_id, item.event_number))
        effect = await apply_stay(uow, item.site, stay, event.occurred_at if event else None, utcnow())
        if event is not None:
            event.outcome = "applied"
        return effect

    return await in_unit_of_work(sessions, apply)


async def _refresh_patient(sessions: SessionFactory, reader: EhrClient, item: store.InboxItem) -> str:
    """A full-resource notification without the Patient: complete the client's snapshot from the EHR."""
    tail = reference_tail(item.focus)
    assert tail is not None
    data = await reader.read("Patient", tail[1])
    if data is None:
        raise UpstreamError(f"the EHR has no Patient/{tail[1]}", http_status=404)
    text = patient_json(data)
    async with transaction(sessions) as session:
        client = await repository.client_by_ehr_id(session, item.site, tail[1])
        if client is None:
            return "no client for this Patient"
        client.patient_json = text
        client.updated_at = utcnow()
        await record_identifiers(session, client)
    return "patient snapshot completed"


async def check_channels(sessions: SessionFactory, settings: Settings) -> list[str]:
    """Find channels that missed their heartbeat (silent for two periods) and queue their recovery, again at
    most once a period while they stay silent, so a dead channel never costs a discharge. Answers their ids."""
    now = utcnow()
    silent: list[str] = []
    async with transaction(sessions) as session:
        for channel in await store.channels(session):
            period = channel.heartbeat_seconds or settings.subscription_heartbeat_seconds
            if not period or now - (channel.last_seen_at or channel.created_at) <= timedelta(seconds=2 * period):
                continue
            silent.append(channel.id)
            channel.silent_since = channel.silent_since or now
            if channel.last_recovery_at is None or now - channel.last_recovery_at > timedelta(seconds=period):
                await queue_recovery(session, channel, now)
    return silent


async def run_intake_worker(
    sessions: SessionFactory,
    readers: EhrClient | SiteClients,
    settings: Settings,
    stop: asyncio.Event,
    wake: asyncio.Event,
) -> None:
    """Work until stopped: watch for silence, drain the inbox, then wait for a poll or a new notification."""
    while not stop.is_set():
        try:
            await check_channels(sessions, settings)
            report = await process_inbox(sessions, readers, settings)
        except Exception:  # keep the worker alive across a database hiccup; the items stay claimable
            log.exception("intake round failed")
            report = InboxReport()
        if report.claimed:
            continue
        waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wake.wait())]
        await asyncio.wait(waits, timeout=settings.intake_poll_seconds, return_when=asyncio.FIRST_COMPLETED)
        for waiting in waits:
            waiting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await waiting
        wake.clear()
