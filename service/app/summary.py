"""The peer app's read: a consented summary of one of the peer's own clients, audited every time."""

from __future__ import annotations

import json
from typing import Any

from consent import (
    AccessRequest,
    Coding,
    DataCategory,
    Decision,
    RequestedItem,
    evaluate,
)
from consent.categories import ACTION_ACCESS, ASSIGNED_PEER_ROLE, PURPOSE_COC, ROLE_IRCP
from service.app.clock import new_id, utcnow
from service.app.consents import consent_record
from service.errors import NotFound
from service.fhir import build
from service.store import repository
from service.store.db import SessionFactory, transaction
from service.store.models import AuditRecord, Client, Episode, PeerSupporter


def _labels(resource: dict[str, Any]) -> frozenset[Coding]:
    return frozenset(Coding(system=s, code=c) for s, c in build.security_labels(resource))


def requested_items(patient: dict[str, Any], episode: Episode, encounter: dict[str, Any]) -> tuple[RequestedItem, ...]:
    """What Peerway holds about the client, per data category, with the labels the EHR put on it."""
    patient_labels = _labels(patient)
    return (
        RequestedItem(DataCategory.PREFERRED_NAME, patient_labels, frozenset({"Patient"})),
        RequestedItem(DataCategory.CONTACT_DETAILS, patient_labels, frozenset({"Patient"})),
        RequestedItem(
            DataCategory.ADMISSION_DISCHARGE,
            _labels(encounter),
            frozenset({"Encounter"}),
            data_date=episode.admitted_at,
        ),
    )


async def read_summary(sessions: SessionFactory, base_url: str, peer_id: str, client_id: str) -> dict[str, Any]:
    """A Bundle (collection) holding only what the client's consents permit this peer to see.

    A client who is not the peer's — or does not exist — is the same 404, so a peer learns nothing about
    clients who are not theirs. The disclosure (or the refusal) is audited in the same transaction.
    """
    now = utcnow()
    async with transaction(sessions) as session:
        episode = await repository.episode_of_peer(session, peer_id, client_id)
        peer = await session.get(PeerSupporter, peer_id)
        client = await session.get(Client, client_id) if episode is not None else None
        if episode is None or client is None or peer is None:
            raise NotFound(f"Patient/{client_id} is not known")
        patient = json.loads(client.patient_json)
        encounter = json.loads(episode.encounter_json)
        records = [consent_record(doc) for doc in await repository.consents_of(session, client.id)]
        request = AccessRequest(
            patient=f"Patient/{client.id}",
            actor_reference=f"Practitioner/{peer_id}",
            actor_roles=frozenset({ASSIGNED_PEER_ROLE, ROLE_IRCP}),
            purpose=PURPOSE_COC,
            action=ACTION_ACCESS,
            items=requested_items(patient, episode, encounter),
            at=now,
        )
        decision = evaluate(records, request)
        resources = _disclosed(decision, client.id, patient, episode, encounter)
        disclosed = decision.permitted_categories()
        requested = frozenset(item.category for item in request.items)
        audit = build.disclosure_audit_event(
            build.Disclosure(
                audit_id=new_id(),
                client_id=client.id,
                actor_reference=request.actor_reference,
                actor_name=peer.name,
                purpose=PURPOSE_COC.code,
                disclosed=disclosed,
                withheld=requested - disclosed,
                consent_ids=frozenset(d.consent_id for d in decision.items if d.permitted and d.consent_id is not None),
                recorded_at=now,
            )
        )
        session.add(
            AuditRecord(
                id=audit["id"],
                client_id=client.id,
                actor=request.actor_reference,
                outcome=audit["outcome"],
                recorded_at=now,
                resource_json=build.to_json(audit),
            )
        )
    return build.collection(resources, base_url, now)


def _disclosed(
    decision: Decision, client_id: str, patient: dict[str, Any], episode: Episode, encounter: dict[str, Any]
) -> list[dict[str, Any]]:
    permitted = decision.permitted_categories()
    resources: list[dict[str, Any]] = []
    if permitted & set(build.PATIENT_CATEGORIES):
        resources.append(build.summary_patient(client_id, patient, permitted))
    if DataCategory.ADMISSION_DISCHARGE in permitted:
        resources.append(build.summary_encounter(episode.id, client_id, encounter))
    return resources
