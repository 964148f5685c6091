"""Recovering what a subscription channel missed, and the EHR reads the intake jobs share.

A gap in event numbers, or a silent channel: ask $status for the count of events, then $events for the missing
numbers when the EHR's CapabilityStatement offers it (and it answers); otherwise, or for what $events could not
give, search Encounter?_lastUpdated=ge<just before the last event we hold>. Episodes follow the Encounters'
current state, so applying what the search finds covers every missed event. (The other intake work:
app/channels.py.)
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import parse_qsl

from sqlalchemy.ext.asyncio import AsyncSession

from service.app.clock import utcnow
from service.app.intake import apply_stay
from service.app.subscriptions import advance
from service.app.uow import UnitOfWork, unit_of_work
from service.domain.stay import PatientSnapshot, Stay
from service.ehr.client import EhrClient
from service.errors import PeerwayError, UpstreamError
from service.fhir.backport import subscription_report
from service.fhir.build import fhir_instant
from service.fhir.ehr_answers import (
    changed_encounters,
    fetched_stay,
    last_updated,
    offers_events_operation,
    patient_id_of,
    patient_json,
)
from service.fhir.notification import SubscriptionReport
from service.fhir.subscription import parse_subscription_notification, reference_tail
from service.settings import Settings
from service.store import channel as store
from service.store.claims import Claimed
from service.store.db import SessionFactory, transaction
from service.store.uow import retrying

log = logging.getLogger(__name__)
T = TypeVar("T")


async def in_transaction(sessions: SessionFactory, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run one unit of work on a session, again if a concurrent transaction created the same row first."""

    async def once() -> T:
        async with unit_of_work(sessions) as uow:
            return await work(uow.session)

    return await retrying(once)


async def in_unit_of_work(sessions: SessionFactory, work: Callable[[UnitOfWork], Awaitable[T]]) -> T:
    """Run one unit of work that changes episodes, again if a concurrent transaction created the same stay first."""

    async def once() -> T:
        async with unit_of_work(sessions) as uow:
            return await work(uow)

    return await retrying(once)


async def read_stay(reader: EhrClient, settings: Settings, encounter_id: str) -> Stay:
    encounter = await reader.read("Encounter", encounter_id)
    if encounter is None:
        raise UpstreamError(f"the EHR has no Encounter/{encounter_id}", http_status=404)
    return await with_patient(reader, settings, encounter)


async def with_patient(reader: EhrClient, settings: Settings, encounter: dict[str, Any]) -> Stay:
    patient_id = patient_id_of(encounter)
    patient = await reader.read("Patient", patient_id) if patient_id else None
    return fetched_stay(encounter, patient, settings.expected_discharge_extension)


async def search_changes(
    sessions: SessionFactory,
    reader: EhrClient,
    settings: Settings,
    site: str,
    channel_id: str | None,
    since: datetime,
) -> int:
    """Apply every Encounter the EHR changed since `since` (all pages); answer how many were applied."""
    params = {"_lastUpdated": f"ge{fhir_instant(since)}", "_sort": "_lastUpdated", "_count": "100"}
    params |= dict(parse_qsl(settings.subscription_search_params))
    applied = 0
    newest: datetime | None = None
    async for page in reader.pages("Encounter", params):  # only pages under the EHR's base
        for encounter in changed_encounters(page):
            try:
                stay = await with_patient(reader, settings, encounter)
            except PeerwayError as exc:  # one unreadable Encounter must not hold up the others
                log.warning(
                    "skipped Encounter/%s found by search: unreadable at %s", encounter.get("id"), exc.expression
                )
                continue
            await in_unit_of_work(sessions, _applying(site, stay))
            applied += 1
            updated = last_updated(encounter)
            newest = updated if newest is None or (updated is not None and updated > newest) else newest
    if channel_id is not None and newest is not None:
        async with transaction(sessions) as session:
            channel = await store.channel_for_update(session, channel_id)
            if channel is not None and (channel.search_cursor is None or newest > channel.search_cursor):
                channel.search_cursor = newest
    return applied


def _applying(site: str, stay: Stay) -> Callable[[UnitOfWork], Awaitable[str]]:
    async def work(uow: UnitOfWork) -> str:
        return await apply_stay(uow, site, stay, None, utcnow())

    return work


async def recover(sessions: SessionFactory, reader: EhrClient, settings: Settings, job: Claimed) -> str:
    """Recover what a channel missed: $status for the count, $events if offered, else a search."""
    assert job.channel_id is not None
    assert job.site is not None
    channel_id, site = job.channel_id, job.site
    async with sessions() as session:
        channel = await session.get(store.SubscriptionChannel, channel_id)
    if channel is None:
        return "channel gone"
    subscription_id = channel.subscription.split("/", 1)[1]
    report = await ehr_status(reader, subscription_id)

    async def count(session: AsyncSession) -> tuple[int, int, int, datetime, bool]:
        row = await store.channel_for_update(session, channel_id)
        assert row is not None
        if report is not None and report.events_since_start is not None:
            row.events_since_start = report.events_since_start
            row.highest_event = max(row.highest_event, report.events_since_start)
        first, missing = await advance(session, row)
        since = await store.event_time_at_or_below(session, row.id, row.contiguous_through) or row.last_event_at
        since = max(filter(None, (since, row.search_cursor)), default=row.created_at)
        margin = timedelta(seconds=settings.subscription_search_margin_seconds)
        return first, missing, row.highest_event, since - margin, row.silent_since is not None

    first, missing, highest, since, silent = await in_transaction(sessions, count)
    if missing and await _recover_by_events(sessions, reader, settings, job, subscription_id, first, highest):
        method = "$events"
    elif missing or silent:
        method = "search"
        await search_changes(sessions, reader, settings, site, channel_id, since)
    else:
        method = "nothing to do (the missing events arrived late)"

    async def settle(session: AsyncSession) -> None:
        row = await store.channel_for_update(session, channel_id)
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

    await in_transaction(sessions, settle)
    return f"recovery of {channel_id}: {missing} missed event(s), by {method}"


async def ehr_status(reader: EhrClient, subscription_id: str) -> SubscriptionReport | None:
    try:
        data = await reader.operation(f"Subscription/{subscription_id}/$status")
        return subscription_report(data, "$status") if data is not None else None
    except PeerwayError as exc:  # the count is a help, not a need: recovery goes on without it
        log.warning("Subscription/%s $status unusable (%s)", subscription_id, type(exc).__name__)
        return None


async def _recover_by_events(
    sessions: SessionFactory,
    reader: EhrClient,
    settings: Settings,
    job: Claimed,
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
            stay = await read_stay(reader, settings, tail[1])
        if stay is None and event.focus is None:
            return False  # an empty payload names nothing: search instead
        if stay is not None and not stay.patient.complete:  # we are in the worker: read the Patient now
            patient = await reader.read("Patient", stay.patient.ehr_id)
            if patient is not None:
                complete = PatientSnapshot(ehr_id=stay.patient.ehr_id, resource_json=patient_json(patient))
                stay = replace(stay, patient=complete)
        await in_unit_of_work(
            sessions, _recovered(job.channel_id or "", job.site or "", event.number, event.occurred_at, stay)
        )
    return True


def _recovered(
    channel_id: str, site: str, number: int, occurred_at: datetime | None, stay: Stay | None
) -> Callable[[UnitOfWork], Awaitable[None]]:
    async def work(uow: UnitOfWork) -> None:
        session = uow.session
        if stay is not None:
            await apply_stay(uow, site, stay, occurred_at, utcnow())
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
