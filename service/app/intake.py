"""Hospital events in: Da Vinci notifications and subscription notifications open, move or discharge a
client's episode.

Rules (also in the README, "Hospital events"):
- An episode is one hospital stay (the EHR's Encounter id) of one client (the EHR's Patient id at that site).
- Admit or transfer of an unknown stay opens an episode "on-ward"; a discharge moves it to "in-community"
  with the discharge date (Encounter.period.end, else the message time) and disposition. A discharge for a stay
  we never saw opens the episode directly in the community.
- A subscription notification has no event code: the Encounter's status decides (service/fhir/subscription.py):
  in-progress or on leave is an admit (for a known stay an update, which is what a transfer is); finished
  (R5 discharged, completed, discontinued) is a discharge; any other status is recorded without effect.
- State only moves forward: an admit or transfer that arrives after the discharge of the same stay is
  recorded but does not pull the client back onto the ward (nor overwrite the newer snapshot).
- Snapshots only move forward in time: an Encounter older (meta.lastUpdated, else the event's time) than the
  one kept does not replace it; a discharge still moves an on-ward stay into the community.
- A stay that began before the client's current stay never becomes current (a late event of an old stay).
- A new stay of a client whose previous episode had a peer keeps that peer: the program's presence goes on.
- Readmission: a new stay of a client whose current episode is in the community, or an Encounter carrying
  hospitalization.reAdmission, marks the episode readmitted and notifies the coordinators in the same
  transaction, and the assigned peer too when the client's consent permits admission-discharge to them.
- Expected discharge of an on-ward stay: the extension the deployment names (or R5 plannedEndDate), else an
  in-progress Encounter's period.end when it lies after the event's time.
- The same Bundle.id from the same site is processed once; a replay gets the first answer. One event of a
  subscription (channel, event number) is processed once; a repeat is acknowledged without effect.
- Events that need the EHR (id-only, empty, missed) are written to the intake inbox in the transaction that
  acknowledges them; service/app/channels.py does the reading, never inside a request's transaction.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from service.app.clock import new_id, utcnow
from service.app.linking import record_identifiers
from service.app.notifications import record_readmission
from service.app.peers import carry_peer_over
from service.domain import (
    EncounterSnapshot,
    EpisodeState,
    HospitalEventKind,
    Stay,
)
from service.fhir.build import operation_outcome, to_json
from service.fhir.parse import parse_notification
from service.store import channel as store
from service.store import repository
from service.store.db import SessionFactory, transaction
from service.store.models import Client, Episode, ProcessedMessage

ON_LEAVE_OR_IN_PROGRESS = frozenset({"in-progress", "onleave"})


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
    sessions: SessionFactory, site: str, data: dict[str, Any], expected_discharge_extension: str | None = None
) -> IntakeAnswer:
    """Apply one notification Bundle exactly once and return the answer to give the sender."""
    event = parse_notification(data, expected_discharge_extension)
    for attempt in range(3):
        try:
            return await _process_once(sessions, site, event.message_id, event.event_code, _stay(event), event.sent_at)
        except IntegrityError:
            # A concurrent transaction inserted the same message, client or stay first. If it was this very
            # message, answer what it answered; otherwise try again: the rows it made are now visible.
            async with sessions() as session:
                done = await session.get(ProcessedMessage, (site, event.message_id))
            if done is not None:
                return _replay(done)
            if attempt == 2:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def _stay(event: Any) -> Stay:
    return Stay(encounter=event.encounter, patient=event.patient, kind=event.kind)


async def _process_once(
    sessions: SessionFactory, site: str, message_id: str, code: str, stay: Stay, sent_at: datetime | None
) -> IntakeAnswer:
    async with transaction(sessions) as session:
        done = await session.get(ProcessedMessage, (site, message_id))
        if done is not None:
            return _replay(done)
        now = utcnow()
        effect = await apply_stay(session, site, stay, sent_at, now)
        body = operation_outcome("information", "informational", f"{code}: {effect}")
        session.add(
            ProcessedMessage(
                site=site,
                bundle_id=message_id,
                event=code,
                response_status=200,
                response_body=to_json(body),
                received_at=now,
            )
        )
    return IntakeAnswer(200, body, replayed=False)


def _replay(done: ProcessedMessage) -> IntakeAnswer:
    return IntakeAnswer(done.response_status, json.loads(done.response_body), replayed=True)


# --- the episode rules, whichever way the event came ---------------------------------------------------------


def _older(candidate: datetime | None, kept: datetime | None) -> bool:
    return candidate is not None and kept is not None and candidate < kept


def _expected_discharge(encounter: EncounterSnapshot, event_time: datetime | None, now: datetime) -> datetime | None:
    if encounter.expected_end is not None:
        return encounter.expected_end
    if (
        encounter.status in ON_LEAVE_OR_IN_PROGRESS
        and encounter.end is not None
        and encounter.end > (event_time or now)
    ):
        return encounter.end
    return None


async def _client(session: AsyncSession, site: str, stay: Stay, now: datetime) -> Client:
    client = await repository.client_by_ehr_id(session, site, stay.patient.ehr_id)
    if client is None:
        client = Client(
            id=new_id(),
            site=site,
            ehr_patient_id=stay.patient.ehr_id,
            patient_json=stay.patient.resource_json,
            created_at=now,
            updated_at=now,
        )
        session.add(client)
        await session.flush()
        await record_identifiers(session, client)
    elif stay.patient.complete:  # a reference-only snapshot never replaces the resource we hold
        changed = client.patient_json != stay.patient.resource_json
        client.patient_json = stay.patient.resource_json
        client.updated_at = now
        if changed:
            await record_identifiers(session, client)
    return client


async def apply_stay(session: AsyncSession, site: str, stay: Stay, event_time: datetime | None, now: datetime) -> str:
    """Apply what one event says about one stay to the client's episodes (the rules in the module docstring).

    Answers what it did, in words for the sender's OperationOutcome (ids only: no PHI).
    """
    if stay.kind is None:
        return "acknowledged; no change to any episode"
    encounter = stay.encounter
    client = await _client(session, site, stay, now)
    snapshot_at = encounter.updated_at or event_time
    episode = await store.episode_for_update(session, client.id, encounter.ehr_id)
    opened = episode is None
    if episode is None:
        previous = await repository.current_episode(session, client.id)
        if previous is not None and _older(encounter.start, previous.admitted_at):
            return "a stay older than the client's current one; recorded without effect"
        readmission = encounter.readmission or (
            previous is not None and previous.state == EpisodeState.IN_COMMUNITY.value
        )
        episode = Episode(
            id=new_id(),
            client_id=client.id,
            ehr_encounter_id=encounter.ehr_id,
            state=EpisodeState.ON_WARD.value,
            admitted_at=encounter.start,
            discharged_at=None,
            discharge_disposition=None,
            encounter_json=encounter.resource_json,
            peer_id=None,
            assigned_at=None,
            created_at=now,
            updated_at=now,
            readmission=readmission,
            previous_episode_id=previous.id if previous is not None else None,
            snapshot_at=snapshot_at,
        )
        session.add(episode)
        await session.flush()
        if previous is not None:
            await carry_peer_over(session, previous, episode, now)
        if readmission:
            await record_readmission(session, episode, now)

    if stay.kind is HospitalEventKind.DISCHARGE:
        if not opened and episode.state == EpisodeState.IN_COMMUNITY.value and _older(snapshot_at, episode.snapshot_at):
            return "an older snapshot of a discharged stay; recorded without effect"
        episode.state = EpisodeState.IN_COMMUNITY.value
        episode.discharged_at = encounter.end or event_time or now
        episode.discharge_disposition = (
            encounter.discharge_disposition[:64] if encounter.discharge_disposition else None
        )
        episode.encounter_json = encounter.resource_json
        episode.admitted_at = episode.admitted_at or encounter.start
        episode.expected_discharge_at = None
        episode.snapshot_at = max(filter(None, (snapshot_at, episode.snapshot_at)), default=None)
        episode.updated_at = now
        return "episode opened in the community" if opened else "episode moved to the community"
    if episode.state == EpisodeState.IN_COMMUNITY.value:
        return "stay already discharged; late event recorded without effect"
    if not opened and _older(snapshot_at, episode.snapshot_at):
        return "an older snapshot of the stay; recorded without effect"
    episode.encounter_json = encounter.resource_json
    episode.admitted_at = episode.admitted_at or encounter.start
    episode.expected_discharge_at = _expected_discharge(encounter, event_time, now)
    episode.snapshot_at = snapshot_at or episode.snapshot_at
    episode.updated_at = now
    if encounter.readmission and not episode.readmission:
        episode.readmission = True
        await record_readmission(session, episode, now)
        return "episode marked readmitted"
    if opened:
        return "episode opened on the ward (readmission)" if episode.readmission else "episode opened on the ward"
    return "episode updated"
