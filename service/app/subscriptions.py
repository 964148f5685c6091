"""Subscription notifications in (R4 backport, R4B, R5): each event taken once per channel, full-resource
events applied at once, id-only and empty events queued as jobs for the worker (done by app/channels.py) in the
same transaction that acknowledges them, and gaps in event numbers queued for recovery.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from service.app.clock import new_id, utcnow
from service.app.intake import ChannelPolicy, IntakeAnswer, apply_stay
from service.app.uow import UnitOfWork, unit_of_work
from service.errors import InvalidResource
from service.fhir.build import operation_outcome
from service.fhir.notification import NotificationType, NotifiedEvent, SubscriptionNotification
from service.store import channel as store
from service.store import jobs
from service.store.db import SessionFactory
from service.store.uow import retrying

# The intake kinds of job: an id-only event's Encounter (and its Patient) to read, a Patient a full-resource
# notification lacked, what changed since a time (empty notifications), and what a channel missed.
INTAKE_FETCH, INTAKE_PATIENT, INTAKE_SEARCH, INTAKE_RECOVER = "fetch", "patient", "search", "recover"
INTAKE_KINDS = frozenset({INTAKE_FETCH, INTAKE_PATIENT, INTAKE_SEARCH, INTAKE_RECOVER})

log = logging.getLogger(__name__)


async def receive_subscription_notification(
    sessions: SessionFactory, site: str, note: SubscriptionNotification, policy: ChannelPolicy
) -> IntakeAnswer:
    """Take one notification: channel health, each new event applied (full-resource) or queued for the EHR
    (id-only, empty), gaps in the event numbers queued for recovery. All in one transaction: once this returns
    (and the sender gets its 2xx) nothing of the notification can be lost."""
    # The same channel, client or stay may be created concurrently: then again, with its rows visible.
    return await retrying(lambda: _receive_once(sessions, site, note, policy))


def _baseline(note: SubscriptionNotification) -> int:
    """Events before the first notification we ever got from a channel are not ours to recover."""
    if note.type is NotificationType.HANDSHAKE:
        return 0
    if note.events:
        return min(e.number for e in note.events) - 1
    return note.events_since_start or 0


async def _receive_once(
    sessions: SessionFactory, site: str, note: SubscriptionNotification, policy: ChannelPolicy
) -> IntakeAnswer:
    now = utcnow()
    counts: Counter[str] = Counter()
    async with unit_of_work(sessions) as uow:
        session = uow.session
        channel = await store.lock_channel(session, site, note.subscription, now)
        if channel is None:
            baseline = _baseline(note)
            channel = store.SubscriptionChannel(
                id=new_id(),
                site=site,
                subscription=note.subscription,
                created_by_peerway=False,
                heartbeat_seconds=policy.heartbeat_seconds or None,
                created_at=now,
                last_seen_at=now,
                highest_event=baseline,
                contiguous_through=baseline,
            )
            session.add(channel)
            await session.flush()
        elif (
            note.type is NotificationType.HANDSHAKE
            and note.events_since_start is not None
            and note.events_since_start < channel.highest_event
        ):
            # The EHR started the Subscription over: numbers count from here again, old ones are not duplicates.
            await store.forget_events(session, channel.id)
            channel.highest_event = channel.contiguous_through = note.events_since_start
        channel.silent_since = None
        channel.form = note.form.value
        channel.topic = note.topic[:500] if note.topic else channel.topic
        channel.ehr_status = note.status or channel.ehr_status
        if note.type is NotificationType.HEARTBEAT:
            channel.last_heartbeat_at = now
        elif note.type is NotificationType.HANDSHAKE:
            channel.handshake_at = now
        if note.events_since_start is not None:
            channel.events_since_start = note.events_since_start
            channel.highest_event = max(channel.highest_event, note.events_since_start)
        for event in note.events:
            if await session.get(store.ChannelEvent, (channel.id, event.number)) is not None:
                counts["duplicate"] += 1
                continue
            outcome = await _take_event(uow, channel, event, note, policy, now)
            counts[outcome] += 1
            session.add(
                store.ChannelEvent(
                    channel_id=channel.id,
                    number=event.number,
                    occurred_at=event.occurred_at,
                    outcome=outcome,
                    focus=event.focus,
                    received_at=now,
                )
            )
            await session.flush()
            channel.highest_event = max(channel.highest_event, event.number)
            if event.occurred_at is not None and (
                channel.last_event_at is None or event.occurred_at > channel.last_event_at
            ):
                channel.last_event_at = event.occurred_at
        first_missing, missing = await advance(session, channel)
        if missing:
            await queue_recovery(session, channel, now + timedelta(seconds=policy.gap_grace_seconds))
        text = _answer_text(note, counts, first_missing, missing)
    log.info("intake: site %s, %s", site, text)  # after the commit; names the Subscription and counts only
    body = operation_outcome("information", "informational", text)
    replayed = bool(note.events) and counts["duplicate"] == len(note.events)
    return IntakeAnswer(200, body, replayed=replayed)


def _answer_text(note: SubscriptionNotification, counts: Counter[str], first_missing: int, missing: int) -> str:
    if not note.events:
        text = f"{note.type.value} for {note.subscription}: acknowledged"
        return text + (f"; {missing} missed event(s) will be recovered from the EHR" if missing else "")
    parts = [f"{n} {what}" for what, n in sorted(counts.items())]
    text = f"{note.type.value} for {note.subscription}: " + ", ".join(parts)
    if missing:
        text += f"; {missing} missed event(s) from number {first_missing} will be recovered from the EHR"
    return text


async def _take_event(
    uow: UnitOfWork,
    channel: store.SubscriptionChannel,
    event: NotifiedEvent,
    note: SubscriptionNotification,
    policy: ChannelPolicy,
    now: datetime,
) -> str:
    session = uow.session
    if event.other_focus:
        return "acknowledged"
    if event.stay is not None:
        await apply_stay(uow, channel.site, event.stay, event.occurred_at or note.sent_at, now)
        if not event.stay.patient.complete:
            queue_work(session, channel, INTAKE_PATIENT, now, focus=f"Patient/{event.stay.patient.ehr_id}")
        return "applied"
    if event.focus is not None:
        queue_work(session, channel, INTAKE_FETCH, now, focus=event.focus, event_number=event.number)
        return "queued"
    if channel.payload in ("id-only", "full-resource"):
        # Peerway asked this channel for ids or resources: an event without a focus is not an "empty" one, and
        # reading it as one would search the whole EHR for what changed.
        raise InvalidResource(
            f"this channel sends {channel.payload} events: each names its focus", f"{event.where}.focus"
        )
    when = event.occurred_at or note.sent_at or channel.last_event_at or now
    await queue_search(session, channel, when - timedelta(seconds=policy.search_margin_seconds), now)
    return "queued"


def queue_work(
    session: AsyncSession,
    channel: store.SubscriptionChannel,
    kind: str,
    available_at: datetime,
    *,
    focus: str | None = None,
    event_number: int | None = None,
    since: datetime | None = None,
) -> None:
    """Write intake work for the worker (ids only) in the caller's transaction.

    Its subject is what it reads (the focus), or the channel for a search or recovery: work of one kind about
    one subject is done one job after the other, oldest first."""
    session.add(
        jobs.new_job(
            kind,
            focus or channel.id,
            channel.site,
            utcnow(),
            available_at=available_at,
            channel_id=channel.id,
            event_number=event_number,
            focus=focus,
            since=since,
        )
    )


async def queue_search(
    session: AsyncSession, channel: store.SubscriptionChannel, since: datetime, now: datetime
) -> None:
    """One waiting search per channel, from the earliest point any notification asked for."""
    if not await jobs.start_waiting_search_earlier(session, channel.id, INTAKE_SEARCH, since, now):
        queue_work(session, channel, INTAKE_SEARCH, now, since=since)


async def queue_recovery(
    session: AsyncSession, channel: store.SubscriptionChannel, available_at: datetime, *, unless_running: bool = False
) -> None:
    """One waiting recovery per channel; it works out what is still missing when it runs. A recovery already
    running may have read the channel before this change, so a new one is queued to follow it; with
    `unless_running` (the silence watch: silence is no news to a running recovery) it is not."""
    if not await jobs.has_pending_job(session, channel.id, INTAKE_RECOVER, utcnow(), running_too=unless_running):
        queue_work(session, channel, INTAKE_RECOVER, available_at)


async def advance(session: AsyncSession, channel: store.SubscriptionChannel) -> tuple[int, int]:
    """Move the channel's contiguous mark over the events we hold; answer (first missing number, how many)."""
    held = await store.event_numbers_above(session, channel.id, channel.contiguous_through)
    mark = channel.contiguous_through
    while mark + 1 in held:
        mark += 1
    channel.contiguous_through = mark
    missing = channel.highest_event - mark - sum(1 for n in held if mark < n <= channel.highest_event)
    return (mark + 1, missing) if missing > 0 else (0, 0)
