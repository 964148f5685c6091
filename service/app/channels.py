"""Subscription channels: the intake work that reads the EHR for id-only, empty and missed events, and the
watch for silent channels (channel health: app/notifications.py; Peerway's own Subscription:
app/own_subscription.py).

Why jobs rather than fetching inline before the transaction: the EHR's sender waits on our answer, and a slow
or failing read would either hold it (and its retries pile up) or lose the event when we answer 5xx and the
sender gives up. Instead the notification's transaction writes the work (ids, no payload) next to its other
effects and answers 2xx; the worker (service/workers/) claims it between transactions and calls `do_intake`,
retrying with backoff and leaving a dead letter, visible in the channel's health, when the EHR refuses for good.

Recovery of missed events (a gap in event numbers, or a silent channel) is app/recovery.py.
"""

from __future__ import annotations

from datetime import timedelta

from service.app.clock import utcnow
from service.app.intake import apply_stay
from service.app.linking import record_identifiers
from service.app.recovery import in_unit_of_work, read_stay, recover, search_changes
from service.app.subscriptions import INTAKE_FETCH, INTAKE_PATIENT, INTAKE_RECOVER, INTAKE_SEARCH, queue_recovery
from service.app.uow import UnitOfWork
from service.ehr.client import EhrClient
from service.errors import UpstreamError
from service.fhir.ehr_answers import patient_json
from service.fhir.subscription import reference_tail
from service.settings import Settings
from service.store import channel as store
from service.store import repository
from service.store.claims import Claimed
from service.store.db import SessionFactory, transaction


async def do_intake(sessions: SessionFactory, reader: EhrClient, settings: Settings, job: Claimed) -> str:
    """Do one claimed intake job with its site's EHR client; answers what it did. Raises UpstreamError when the
    EHR fails or refuses, PeerwayError when its answer cannot be read (the worker decides what follows)."""
    if job.kind == INTAKE_FETCH:
        return await _fetch(sessions, reader, settings, job)
    if job.kind == INTAKE_PATIENT:
        return await _refresh_patient(sessions, reader, job)
    if job.kind == INTAKE_SEARCH:
        assert job.since is not None
        found = await search_changes(sessions, reader, settings, _site(job), job.channel_id, job.since)
        return f"{found} changed Encounter(s) applied"
    if job.kind == INTAKE_RECOVER:
        return await recover(sessions, reader, settings, job)
    raise UpstreamError(f"unknown intake work {job.kind!r}", http_status=400)


def _site(job: Claimed) -> str:
    assert job.site is not None  # intake work is always queued with its channel's site
    return job.site


async def _fetch(sessions: SessionFactory, reader: EhrClient, settings: Settings, job: Claimed) -> str:
    """An id-only event: read the focus Encounter and its Patient, then apply them like a full resource."""
    tail = reference_tail(job.focus)
    assert tail is not None
    stay = await read_stay(reader, settings, tail[1])

    async def apply(uow: UnitOfWork) -> str:
        event = None
        if job.channel_id is not None and job.event_number is not None:
            event = await uow.session.get(store.ChannelEvent, (job.channel_id, job.event_number))
        effect = await apply_stay(uow, _site(job), stay, event.occurred_at if event else None, utcnow())
        if event is not None:
            event.outcome = "applied"
        return effect

    return await in_unit_of_work(sessions, apply)


async def _refresh_patient(sessions: SessionFactory, reader: EhrClient, job: Claimed) -> str:
    """A full-resource notification without the Patient: complete the client's snapshot from the EHR."""
    tail = reference_tail(job.focus)
    assert tail is not None
    data = await reader.read("Patient", tail[1])
    if data is None:
        raise UpstreamError(f"the EHR has no Patient/{tail[1]}", http_status=404)
    text = patient_json(data)
    async with transaction(sessions) as session:
        client = await repository.client_by_ehr_id(session, _site(job), tail[1])
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
                await queue_recovery(session, channel, now, unless_running=True)
    return silent
