"""Subscription channels: the intake worker that reads the EHR for id-only, empty and missed events, the
watch for silent channels (channel health: app/notifications.py; Peerway's own
Subscription: app/own_subscription.py).

Why an inbox and a worker rather than fetching inline before the transaction: the EHR's sender waits on our
answer, and a slow or failing read would either hold it (and its retries pile up) or lose the event when we
answer 5xx and the sender gives up. Instead the notification's transaction writes the work (ids, no payload)
next to its other effects and answers 2xx; the worker reads the EHR between transactions, retries with
backoff, and leaves a dead letter visible in the channel's health when the EHR refuses for good.

Recovery (a gap in event numbers, or a silent channel): ask $status for the count of events, then $events for
the missing numbers when the EHR's CapabilityStatement offers it (and it answers); otherwise, or for what
$events could not give, search Encounter?_lastUpdated=ge<just before the last event we hold>. Episodes
follow the Encounters' current state, so applying what the search finds covers every missed event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Protocol, TypeVar
from urllib.parse import parse_qsl

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from service.app.clock import utcnow
from service.app.intake import apply_stay
from service.app.linking import record_identifiers
from service.app.subscriptions import advance, queue_recovery
from service.domain import PatientSnapshot, Stay, SubscriptionReport
from service.errors import PeerwayError, UpstreamError
from service.fhir.build import fhir_instant
from service.fhir.fetch import (
    EhrReader,
    changed_encounters,
    fetched_stay,
    last_updated,
    next_link,
    offers_events_operation,
    patient_id_of,
    patient_json,
    subscription_report,
)
from service.fhir.subscription import parse_subscription_notification, reference_tail
from service.settings import Settings
from service.store import channel as store
from service.store import repository
from service.store.db import SessionFactory, transaction

log = logging.getLogger(__name__)
T = TypeVar("T")
PERMANENT = frozenset({400, 403, 404, 405, 410, 422})
MAX_SEARCH_PAGES = 50
BATCH = 20


class SiteReaders(Protocol):
    """Each site's EHR reader (service/app/connections.py EhrDirectory)."""

    async def reader(self, site: str) -> EhrReader: ...


@dataclass(frozen=True)
class InboxReport:
    claimed: int = 0
    done: int = 0
    retrying: int = 0
    dead: int = 0


async def _in_transaction(sessions: SessionFactory, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run one unit of work, again if a concurrent transaction created the same client or stay first."""
    for attempt in range(3):
        try:
            async with transaction(sessions) as session:
                return await work(session)
        except IntegrityError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


# --- the worker ----------------------------------------------------------------------------------------------


async def process_inbox(sessions: SessionFactory, readers: EhrReader | SiteReaders, settings: Settings) -> InboxReport:
    """Do every due inbox item once (one claim batch). Safe to run in any number of workers.

    Each item is read from the EHR of its own site (the site whose credentials its notification carried); one
    EhrReader given instead serves every site (single-EHR tests and tools).
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
            reader = readers if isinstance(readers, EhrReader) else await readers.reader(item.site)
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


async def _work(sessions: SessionFactory, reader: EhrReader, settings: Settings, item: store.InboxItem) -> str:
    if item.kind == "fetch":
        return await _fetch(sessions, reader, settings, item)
    if item.kind == "patient":
        return await _refresh_patient(sessions, reader, item)
    if item.kind == "search":
        assert item.since is not None
        found = await _search(sessions, reader, settings, item.site, item.channel_id, item.since)
        return f"{found} changed Encounter(s) applied"
    if item.kind == "recover":
        return await _recover(sessions, reader, settings, item)
    raise UpstreamError(f"unknown intake work {item.kind!r}", http_status=400)


async def _read_stay(reader: EhrReader, settings: Settings, encounter_id: str) -> Stay:
    encounter = await reader.read("Encounter", encounter_id)
    if encounter is None:
        raise UpstreamError(f"the EHR has no Encounter/{encounter_id}", http_status=404)
    return await _with_patient(reader, settings, encounter)


async def _with_patient(reader: EhrReader, settings: Settings, encounter: dict[str, Any]) -> Stay:
    patient_id = patient_id_of(encounter)
    patient = await reader.read("Patient", patient_id) if patient_id else None
    return fetched_stay(encounter, patient, settings.expected_discharge_extension)


async def _fetch(sessions: SessionFactory, reader: EhrReader, settings: Settings, item: store.InboxItem) -> str:
    """An id-only event: read the focus Encounter and its Patient, then apply them like a full resource."""
    tail = reference_tail(item.focus)
    assert tail is not None
    stay = await _read_stay(reader, settings, tail[1])

    async def apply(session: AsyncSession) -> str:
        event = None
        if item.channel_id is not None and item.event_number is not None:
            event = await session.get(store.ChannelEvent, (item.channel_id, item.event_number))
        effect = await apply_stay(session, item.site, stay, event.occurred_at if event else None, utcnow())
        if event is not None:
            event.outcome = "applied"
        return effect

    return await _in_transaction(sessions, apply)


async def _refresh_patient(sessions: SessionFactory, reader: EhrReader, item: store.InboxItem) -> str:
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


async def _search(
    sessions: SessionFactory,
    reader: EhrReader,
    settings: Settings,
    site: str,
    channel_id: str | None,
    since: datetime,
) -> int:
    """Apply every Encounter the EHR changed since `since` (all pages); answer how many were applied."""
    params = {"_lastUpdated": f"ge{fhir_instant(since)}", "_sort": "_lastUpdated", "_count": "100"}
    params |= dict(parse_qsl(settings.subscription_search_params))
    page = await reader.search("Encounter", params)
    applied = 0
    newest: datetime | None = None
    for _ in range(MAX_SEARCH_PAGES):
        for encounter in changed_encounters(page):
            try:
                stay = await _with_patient(reader, settings, encounter)
            except PeerwayError as exc:  # one unreadable Encounter must not hold up the others
                log.warning(
                    "skipped Encounter/%s found by search: unreadable at %s", encounter.get("id"), exc.expression
                )
                continue
            await _in_transaction(sessions, _applying(site, stay))
            applied += 1
            updated = last_updated(encounter)
            newest = updated if newest is None or (updated is not None and updated > newest) else newest
        link = next_link(page)
        if link is None:
            break
        page = await reader.page(link)
    if channel_id is not None and newest is not None:
        async with transaction(sessions) as session:
            channel = await store.channel_for_update(session, channel_id)
            if channel is not None and (channel.search_cursor is None or newest > channel.search_cursor):
                channel.search_cursor = newest
    return applied


def _applying(site: str, stay: Stay) -> Callable[[AsyncSession], Awaitable[str]]:
    async def work(session: AsyncSession) -> str:
        return await apply_stay(session, site, stay, None, utcnow())

    return work


async def _recover(sessions: SessionFactory, reader: EhrReader, settings: Settings, item: store.InboxItem) -> str:
    """Recover what a channel missed: $status for the count, $events if offered, else a search."""
    assert item.channel_id is not None
    async with sessions() as session:
        channel = await session.get(store.SubscriptionChannel, item.channel_id)
    if channel is None:
        return "channel gone"
    subscription_id = channel.subscription.split("/", 1)[1]
    report = await ehr_status(reader, subscription_id)

    async def count(session: AsyncSession) -> tuple[int, int, int, datetime, bool]:
        row = await store.channel_for_update(session, item.channel_id or "")
        assert row is not None
        if report is not None and report.events_since_start is not None:
            row.events_since_start = report.events_since_start
            row.highest_event = max(row.highest_event, report.events_since_start)
        first, missing = await advance(session, row)
        since = await store.event_time_at_or_below(session, row.id, row.contiguous_through) or row.last_event_at
        since = max(filter(None, (since, row.search_cursor)), default=row.created_at)
        margin = timedelta(seconds=settings.subscription_search_margin_seconds)
        return first, missing, row.highest_event, since - margin, row.silent_since is not None

    first, missing, highest, since, silent = await _in_transaction(sessions, count)
    if missing and await _recover_by_events(sessions, reader, settings, item, subscription_id, first, highest):
        method = "$events"
    elif missing or silent:
        method = "search"
        await _search(sessions, reader, settings, item.site, item.channel_id, since)
    else:
        method = "nothing to do (the missing events arrived late)"

    async def settle(session: AsyncSession) -> None:
        row = await store.channel_for_update(session, item.channel_id or "")
        assert row is not None
        # Episodes follow the Encounters' current state: up to `highest`, every event is now accounted for.
        row.contiguous_through = max(row.contiguous_through, highest)
        await advance(session, row)
        row.last_recovery_at = utcnow()
        row.last_recovery_note = (
            f"{missing} missed event(s) from {first} recovered by {method}"[:300]
            if missing
            else (f"checked by {method}: nothing missed")
        )

    await _in_transaction(sessions, settle)
    return f"recovery of {item.channel_id}: {missing} missed event(s), by {method}"


async def ehr_status(reader: EhrReader, subscription_id: str) -> SubscriptionReport | None:
    try:
        data = await reader.operation(f"Subscription/{subscription_id}/$status")
        return subscription_report(data, "$status") if data is not None else None
    except PeerwayError as exc:  # the count is a help, not a need: recovery goes on without it
        log.warning("Subscription/%s $status unusable (%s)", subscription_id, type(exc).__name__)
        return None


async def _recover_by_events(
    sessions: SessionFactory,
    reader: EhrReader,
    settings: Settings,
    item: store.InboxItem,
    subscription_id: str,
    first: int,
    highest: int,
) -> bool:
    """Ask $events for the missing numbers; False when the EHR does not offer it (then we search)."""
    try:
        offered = offers_events_operation(await reader.capability())
    except UpstreamError:
        offered = True  # try it and fall back
    if not offered:
        return False
    data = await reader.operation(
        f"Subscription/{subscription_id}/$events",
        {"eventsSinceNumber": str(first), "eventsUntilNumber": str(highest), "content": "full-resource"},
    )
    if data is None:
        return False
    try:
        note = parse_subscription_notification(data, settings.expected_discharge_extension)
    except PeerwayError as exc:
        log.warning("Subscription/%s $events answer unusable at %s: searching", subscription_id, exc.expression)
        return False
    for event in note.events:
        stay = event.stay
        if stay is None and event.focus is not None and not event.other_focus:
            tail = reference_tail(event.focus)
            assert tail is not None
            stay = await _read_stay(reader, settings, tail[1])
        if stay is None and event.focus is None:
            return False  # an empty payload names nothing: search instead
        if stay is not None and not stay.patient.complete:  # we are in the worker: read the Patient now
            patient = await reader.read("Patient", stay.patient.ehr_id)
            if patient is not None:
                complete = PatientSnapshot(ehr_id=stay.patient.ehr_id, resource_json=patient_json(patient))
                stay = replace(stay, patient=complete)
        await _in_transaction(
            sessions, _recovered(item.channel_id or "", item.site, event.number, event.occurred_at, stay)
        )
    return True


def _recovered(
    channel_id: str, site: str, number: int, occurred_at: datetime | None, stay: Stay | None
) -> Callable[[AsyncSession], Awaitable[None]]:
    async def work(session: AsyncSession) -> None:
        if stay is not None:
            await apply_stay(session, site, stay, occurred_at, utcnow())
        if await session.get(store.ChannelEvent, (channel_id, number)) is None:
            session.add(
                store.ChannelEvent(
                    channel_id=channel_id,
                    number=number,
                    occurred_at=occurred_at,
                    outcome="recovered",
                    focus=None,
                    received_at=utcnow(),
                )
            )

    return work


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
    readers: EhrReader | SiteReaders,
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
