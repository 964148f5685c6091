"""Hospital events in: a Da Vinci notification opens, moves or discharges a client's episode.

Rules (also in the README):
- An episode is one hospital stay (the EHR's Encounter id) of one client (the EHR's Patient id at that site).
- Admit or transfer of an unknown stay opens an episode "on-ward"; a discharge moves it to "in-community"
  with the discharge date (Encounter.period.end, else the message time) and disposition. A discharge for a stay
  we never saw opens the episode directly in the community.
- State only moves forward: an admit or transfer that arrives after the discharge of the same stay is
  recorded but does not pull the client back onto the ward (nor overwrite the newer snapshot).
- A new stay of a client whose previous episode had a peer keeps that peer: the program's presence goes on.
- The same Bundle.id from the same site is processed once; a replay gets the first answer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from service.app.clock import new_id, utcnow
from service.domain import EpisodeState, HospitalEvent, HospitalEventKind
from service.fhir.build import operation_outcome, to_json
from service.fhir.parse import parse_notification
from service.store import repository
from service.store.db import SessionFactory, transaction
from service.store.models import Client, Episode, ProcessedMessage


@dataclass(frozen=True)
class IntakeAnswer:
    status: int
    body: dict[str, Any]
    replayed: bool


async def process_notification(sessions: SessionFactory, site: str, data: dict[str, Any]) -> IntakeAnswer:
    """Apply one notification Bundle exactly once and return the answer to give the sender."""
    event = parse_notification(data)
    for attempt in range(3):
        try:
            return await _process_once(sessions, site, event)
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


async def _process_once(sessions: SessionFactory, site: str, event: HospitalEvent) -> IntakeAnswer:
    async with transaction(sessions) as session:
        done = await session.get(ProcessedMessage, (site, event.message_id))
        if done is not None:
            return _replay(done)
        effect = await _apply(session, site, event)
        body = operation_outcome("information", "informational", f"{event.event_code}: {effect}")
        session.add(
            ProcessedMessage(
                site=site,
                bundle_id=event.message_id,
                event=event.event_code,
                response_status=200,
                response_body=to_json(body),
                received_at=utcnow(),
            )
        )
    return IntakeAnswer(200, body, replayed=False)


def _replay(done: ProcessedMessage) -> IntakeAnswer:
    return IntakeAnswer(done.response_status, json.loads(done.response_body), replayed=True)


async def _apply(session: AsyncSession, site: str, event: HospitalEvent) -> str:
    if event.kind is None:
        return "acknowledged; no change to any episode"
    now = utcnow()
    client = await repository.client_by_ehr_id(session, site, event.patient.ehr_id)
    if client is None:
        client = Client(
            id=new_id(),
            site=site,
            ehr_patient_id=event.patient.ehr_id,
            patient_json=event.patient.resource_json,
            created_at=now,
            updated_at=now,
        )
        session.add(client)
        await session.flush()
    else:
        client.patient_json = event.patient.resource_json
        client.updated_at = now

    episode = await repository.episode_by_encounter(session, client.id, event.encounter.ehr_id)
    if episode is None:
        previous = await repository.current_episode(session, client.id)
        episode = Episode(
            id=new_id(),
            client_id=client.id,
            ehr_encounter_id=event.encounter.ehr_id,
            state=EpisodeState.ON_WARD.value,
            admitted_at=event.encounter.start,
            discharged_at=None,
            discharge_disposition=None,
            encounter_json=event.encounter.resource_json,
            peer_id=previous.peer_id if previous is not None else None,
            assigned_at=now if previous is not None and previous.peer_id else None,
            created_at=now,
            updated_at=now,
        )
        session.add(episode)
        opened = True
    else:
        opened = False

    if event.kind is HospitalEventKind.DISCHARGE:
        episode.state = EpisodeState.IN_COMMUNITY.value
        episode.discharged_at = event.encounter.end or event.sent_at or now
        episode.discharge_disposition = event.encounter.discharge_disposition
        episode.encounter_json = event.encounter.resource_json
        episode.admitted_at = episode.admitted_at or event.encounter.start
        episode.updated_at = now
        return "episode opened in the community" if opened else "episode moved to the community"
    if episode.state == EpisodeState.IN_COMMUNITY.value:
        return "stay already discharged; late event recorded without effect"
    episode.encounter_json = event.encounter.resource_json
    episode.admitted_at = episode.admitted_at or event.encounter.start
    episode.updated_at = now
    if opened:
        return "episode opened on the ward"
    return "episode updated" if event.kind is HospitalEventKind.TRANSFER else "episode already open"
