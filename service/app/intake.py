"""Hospital events in: Da Vinci notifications and subscription notifications open, move or discharge a
client's episode.

The rules of what an event does to an episode live with the Episode aggregate (service/domain/episode.py); here
a notification is taken exactly once and applied in one unit of work:
- A subscription notification has no event code: the Encounter's status decides (service/fhir/subscription.py):
  in-progress or on leave is an admit (for a known stay an update, which is what a transfer is); finished
  (R5 discharged, completed, discontinued) is a discharge; any other status is recorded without effect.
- The same Bundle.id from the same site is processed once; a replay gets the first answer. One event of a
  subscription (channel, event number) is processed once; a repeat is acknowledged without effect.
- Events that need the EHR (id-only, empty, missed) are written as jobs in the transaction that acknowledges
  them; the worker has service/app/channels.py do the reading, never inside a request's transaction.
- A readmission tells the coordinators in the same transaction, and the assigned peer too when the client's
  consent permits admission-discharge to them (service/app/uow.py).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from service.app.clock import new_id, utcnow
from service.app.linking import identifier_digests, record_identifiers
from service.app.uow import UnitOfWork, unit_of_work
from service.domain.episode import Episode
from service.domain.stay import HospitalEvent, Stay
from service.errors import Forbidden
from service.fhir.build import operation_outcome, to_json
from service.fhir.parse import OtherEvent, parse_notification
from service.store import intake as store
from service.store import repository
from service.store.db import SessionFactory
from service.store.models import Client, ProcessedMessage
from service.store.uow import retrying

NO_EFFECT = "acknowledged; no change to any episode"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IntakeAnswer:
    status: int
    body: dict[str, Any]
    replayed: bool


@dataclass(frozen=True)
class ChannelPolicy:
    """The settings a notification's transaction needs (read once by the router)."""

    heartbeat_seconds: int
    gap_grace_seconds: float
    search_margin_seconds: float


# --- Da Vinci $process-message -------------------------------------------------------------------------------


async def process_notification(
    sessions: SessionFactory,
    site: str,
    data: dict[str, Any],
    expected_discharge_extension: str | None = None,
    *,
    body: bytes | None = None,
) -> IntakeAnswer:
    """Apply one notification Bundle exactly once and return the answer to give the sender.

    An event Peerway does not act on (another code, another system) is acknowledged and recorded without
    effect: a conformant sender stops sending after a 4xx, so only a message Peerway cannot read is refused.
    `body`, the bytes `data` was read from when the caller has them, makes reading the Bundle cheaper.
    """
    event = parse_notification(data, expected_discharge_extension, body)
    if isinstance(event, OtherEvent):
        stay = None
        log.info(
            "acknowledged an event Peerway does not act on (site %s, bundle %s, %s code)",
            site,
            event.message_id,
            "another Da Vinci" if event.davinci else "another system's",
        )
    else:
        stay = Stay(encounter=event.encounter, patient=event.patient, kind=event.kind)
    sent_at = event.sent_at if isinstance(event, HospitalEvent) else None

    async def once() -> IntakeAnswer:
        return await _process_once(sessions, site, event.message_id, event.event_code, stay, sent_at)

    async def answered_already() -> IntakeAnswer | None:
        # A concurrent transaction inserted the same message, client or stay first. If it was this very message,
        # answer what it answered; otherwise try again: the rows it made are now visible.
        async with sessions() as session:
            done = await session.get(ProcessedMessage, (site, event.message_id))
        return _replay(done) if done is not None else None

    return await retrying(once, settled=answered_already)


async def _process_once(
    sessions: SessionFactory, site: str, message_id: str, code: str, stay: Stay | None, sent_at: datetime | None
) -> IntakeAnswer:
    async with unit_of_work(sessions) as uow:
        # The site's state is read in the event's own transaction: a site disabled a moment ago is refused at once.
        found = await store.look_up(uow.session, site, message_id, stay.patient.ehr_id if stay is not None else None)
        if not found.site_active:
            raise Forbidden(f"site {site} is not registered or is disabled")
        if found.answered is not None:
            log.info("intake: site %s, bundle %s: processed before, answered as then", site, message_id)
            return IntakeAnswer(found.answered.status, json.loads(found.answered.body), replayed=True)
        now = utcnow()
        effect = (
            await apply_stay(uow, site, stay, sent_at, now, known=KnownClient(found.client))
            if stay is not None
            else NO_EFFECT
        )
        body = operation_outcome("information", "informational", f"{code}: {effect}")
        await store.record_answer(uow.session, site, message_id, code, 200, to_json(body), now)
    # One line per message, after its commit, with ids only (the effect names Peerway's client and episode).
    log.info("intake: site %s, bundle %s, %s: %s", site, message_id, code, effect)
    return IntakeAnswer(200, body, replayed=False)


def _replay(done: ProcessedMessage) -> IntakeAnswer:
    return IntakeAnswer(done.response_status, json.loads(done.response_body), replayed=True)


# --- one stay, whichever way the event came ------------------------------------------------------------------


@dataclass(frozen=True)
class KnownClient:
    """The client of an event's Patient as the caller already looked it up (None: not known yet)."""

    client: Client | None


async def _client(
    uow: UnitOfWork, site: str, stay: Stay, now: datetime, known: KnownClient | None
) -> tuple[Client, bool]:
    """The stay's client, made when the Patient is new to the site; and whether it was made now."""
    client = (
        known.client if known is not None else await repository.client_by_ehr_id(uow.session, site, stay.patient.ehr_id)
    )
    if client is None:
        values = Client(
            id=new_id(),
            site=site,
            ehr_patient_id=stay.patient.ehr_id,
            patient_json=stay.patient.resource_json,
            created_at=now,
            updated_at=now,
        )
        client = await store.insert_client(uow.session, values, identifier_digests(values.patient_json))
        uow.hold(client)
        return client, True
    uow.hold(client)
    if stay.patient.complete:  # a reference-only snapshot never replaces the resource we hold
        changed = client.patient_json != stay.patient.resource_json
        client.patient_json = stay.patient.resource_json
        client.updated_at = now
        if changed:
            await record_identifiers(uow.session, client)
    return client, False


async def apply_stay(
    uow: UnitOfWork,
    site: str,
    stay: Stay,
    event_time: datetime | None,
    now: datetime,
    *,
    known: KnownClient | None = None,
) -> str:
    """Apply what one event says about one stay to the client's episodes (service/domain/episode.py).

    Answers what it did, in words for the sender's OperationOutcome, naming Peerway's client and episode ids so
    that a coordinator (or the quick start) can go on from there (ids only: no PHI). `known` is the client of the
    stay's Patient when the caller has looked it up already.
    """
    if stay.kind is None:
        return NO_EFFECT
    client, made_now = await _client(uow, site, stay, now, known)
    # A client made in this transaction has no episodes to look for.
    episode = None if made_now else await uow.episodes.for_stay(client.id, stay.encounter.ehr_id)
    opened = episode is None
    if episode is None:
        previous = None if made_now else await uow.episodes.current_of(client.id)
        episode = Episode.open_for_stay(new_id(), client.id, stay, previous, event_time, now)
        if episode is None:
            return f"a stay older than the client's current one; recorded without effect (client {client.id})"
        uow.episodes.add(episode)
    said = episode.apply_stay(stay, event_time, now, opened=opened)
    return f"{said} (client {client.id}, episode {episode.id})"
