"""Outbox delivery: claim due rows, build the FHIR resources from current state, write them to the EHR.

Exactly-once in effect: the row is written with the change it announces; the EHR write is idempotent (PUT
with our stable id, or a conditional create on our identifier), so a row delivered twice after a crash
changes nothing. Claims are leases: a worker that dies leaves its rows claimable again when the lease ends.
On PostgreSQL several workers claim with FOR UPDATE SKIP LOCKED; SQLite serialises writers anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import or_, select

from fhir_profiles import CONTACT_IDENTIFIER_SYSTEM
from service.app.clock import utcnow
from service.app.contacts import OUTBOX_CONTACT
from service.domain import ContactKind
from service.errors import UpstreamError
from service.fhir import build
from service.fhir.client import EhrClient
from service.settings import Settings
from service.store.db import SessionFactory, transaction
from service.store.models import Client, Contact, Episode, OutboxItem, PeerSupporter

log = logging.getLogger(__name__)

# The EHR said no for good: retrying cannot help (the dead letter keeps its OperationOutcome).
PERMANENT_STATUSES = frozenset({400, 403, 404, 405, 409, 410, 412, 422})


@dataclass(frozen=True)
class DeliveryReport:
    claimed: int = 0
    delivered: int = 0
    retrying: int = 0
    dead: int = 0


def backoff_seconds(attempts: int, cap: float) -> float:
    """Exponential backoff with full jitter: up to 2, 4, 8 ... seconds, never more than cap."""
    return random.uniform(0.5, 1.0) * min(cap, 2.0 ** min(attempts, 30))  # noqa: S311 - jitter, not crypto


async def _claim(sessions: SessionFactory, settings: Settings) -> list[int]:
    now = utcnow()
    async with transaction(sessions) as session:
        query = (
            select(OutboxItem)
            .where(
                OutboxItem.status == "pending",
                OutboxItem.available_at <= now,
                or_(OutboxItem.claimed_until.is_(None), OutboxItem.claimed_until < now),
            )
            .order_by(OutboxItem.id)
            .limit(settings.outbox_batch_size)
        )
        if session.get_bind().dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        items = (await session.execute(query)).scalars().all()
        lease = now + timedelta(seconds=settings.outbox_lease_seconds)
        for item in items:
            item.claimed_until = lease
        return [item.id for item in items]


async def _contact_write(sessions: SessionFactory, contact_id: str) -> build.ContactView | None:
    async with sessions() as session:
        contact = await session.get(Contact, contact_id)
        if contact is None:
            return None
        episode = await session.get(Episode, contact.episode_id)
        peer = await session.get(PeerSupporter, contact.peer_id)
        client = await session.get(Client, episode.client_id) if episode else None
        if episode is None or peer is None or client is None:
            return None
        return build.ContactView(
            contact_id=contact.id,
            kind=ContactKind(contact.kind),
            started_at=contact.started_at,
            minutes=contact.minutes,
            subject_reference=f"Patient/{client.ehr_patient_id}",
            hospital_stay_reference=f"Encounter/{episode.ehr_encounter_id}",
            practitioner_reference=f"Practitioner/{build.ehr_practitioner_id(peer.id)}",
            peer_id=peer.id,
            peer_name=peer.name,
        )


async def _deliver_contact(ehr: EhrClient, settings: Settings, view: build.ContactView) -> None:
    await ehr.put(build.practitioner(view.peer_id, view.peer_name))
    encounter = build.contact_encounter(view)
    if settings.ehr_write_mode == "put":
        await ehr.put(encounter)
    else:
        await ehr.create_if_none_exist(encounter, f"{CONTACT_IDENTIFIER_SYSTEM}|{view.contact_id}")


async def _deliver(sessions: SessionFactory, ehr: EhrClient, settings: Settings, item: OutboxItem) -> None:
    if item.kind != OUTBOX_CONTACT:
        raise UpstreamError(f"unknown outbox kind {item.kind}", http_status=400)
    view = await _contact_write(sessions, item.subject_id)
    if view is None:
        raise UpstreamError(f"contact {item.subject_id} no longer exists", http_status=410)
    await _deliver_contact(ehr, settings, view)


async def deliver_due(sessions: SessionFactory, ehr: EhrClient, settings: Settings) -> DeliveryReport:
    """Deliver every row that is due now (one claim batch). Safe to run in any number of workers."""
    ids = await _claim(sessions, settings)
    delivered = retrying = dead = 0
    for item_id in ids:
        async with sessions() as session:
            item = await session.get(OutboxItem, item_id)
        if item is None or item.status != "pending":
            continue
        try:
            await _deliver(sessions, ehr, settings, item)
        except UpstreamError as exc:
            permanent = exc.http_status in PERMANENT_STATUSES
            async with transaction(sessions) as session:
                row = await session.get(OutboxItem, item_id)
                assert row is not None
                row.attempts += 1
                row.claimed_until = None
                row.last_error = exc.diagnostics + (f"\n{build.to_json(exc.outcome)}" if exc.outcome else "")
                if permanent:
                    row.status = "dead"
                    dead += 1
                else:
                    wait = (
                        exc.retry_after
                        if exc.retry_after is not None
                        else backoff_seconds(row.attempts, settings.outbox_max_backoff_seconds)
                    )
                    row.available_at = utcnow() + timedelta(seconds=min(wait, settings.outbox_max_backoff_seconds))
                    retrying += 1
            log.warning("outbox row %s: %s (%s)", item_id, exc.diagnostics, "dead" if permanent else "retry")
            continue
        async with transaction(sessions) as session:
            row = await session.get(OutboxItem, item_id)
            assert row is not None
            now = utcnow()
            row.status = "done"
            row.done_at = now
            row.attempts += 1
            row.claimed_until = None
            if row.kind == OUTBOX_CONTACT:
                contact = await session.get(Contact, row.subject_id)
                if contact is not None:
                    contact.delivered_at = now
        delivered += 1
    return DeliveryReport(claimed=len(ids), delivered=delivered, retrying=retrying, dead=dead)


async def run_worker(sessions: SessionFactory, ehr: EhrClient, settings: Settings, stop: asyncio.Event) -> None:
    """Deliver until stopped: drain what is due, then wait for the next poll (or the stop signal)."""
    while not stop.is_set():
        try:
            report = await deliver_due(sessions, ehr, settings)
        except Exception:  # keep the worker alive across a database hiccup; the rows stay claimable
            log.exception("outbox delivery round failed")
            report = DeliveryReport()
        if report.claimed:
            continue
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=settings.outbox_poll_seconds)
