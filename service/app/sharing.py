"""What Peerway holds about a client, per data category, and the consent decision over it.

The summary (peer), the explanation (coordinator) and the CDS Hooks consult (EHR) all ask here, so they
can never disagree about what a client's consents allow.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from consent import AccessRequest, Coding, DataCategory, Decision, RequestedItem, evaluate
from consent.categories import ACTION_ACCESS, ASSIGNED_PEER_ROLE, PURPOSE_COC, ROLE_IRCP
from service.app.clock import new_id
from service.app.consents import consent_record
from service.fhir import build
from service.store import repository
from service.store.models import AuditRecord, Client, Episode

# Where each category's data lives (FHIR resource type), as the data-category CodeSystem describes it.
SOURCE_TYPES: dict[DataCategory, str] = {
    DataCategory.PREFERRED_NAME: "Patient",
    DataCategory.CONTACT_DETAILS: "Patient",
    DataCategory.ADMISSION_DISCHARGE: "Encounter",
    DataCategory.UPCOMING_APPOINTMENTS: "Appointment",
    DataCategory.RECOVERY_GOALS: "Goal",
    DataCategory.INTERESTS: "QuestionnaireResponse",
    DataCategory.SAFETY_CONSIDERATIONS: "Flag",
    DataCategory.COMMUNITY_SUPPORTS: "RelatedPerson",
    DataCategory.DIAGNOSIS: "Condition",
    DataCategory.CLINICAL_NOTES: "DocumentReference",
}
# The categories Peerway holds data for today: the EHR's Patient and hospital-stay snapshots.
HELD: tuple[DataCategory, ...] = (
    DataCategory.PREFERRED_NAME,
    DataCategory.CONTACT_DETAILS,
    DataCategory.ADMISSION_DISCHARGE,
)


@dataclass(frozen=True)
class Holdings:
    """The client's snapshots as stored, read once per request."""

    client: Client
    episode: Episode
    patient: dict[str, Any]
    encounter: dict[str, Any]

    @classmethod
    def of(cls, client: Client, episode: Episode) -> Holdings:
        return cls(client, episode, json.loads(client.patient_json), json.loads(episode.encounter_json))

    def item(self, category: DataCategory) -> RequestedItem:
        """The category as a request item, with the security labels the EHR put on its source."""
        source = SOURCE_TYPES[category]
        labels: frozenset[Coding] = frozenset()
        if source == "Patient":
            labels = _labels(self.patient)
        elif source == "Encounter":
            labels = _labels(self.encounter)
        data_date = self.episode.admitted_at if source == "Encounter" else None
        return RequestedItem(category, labels, frozenset({source}), data_date=data_date)


def _labels(resource: dict[str, Any]) -> frozenset[Coding]:
    return frozenset(Coding(system=s, code=c) for s, c in build.security_labels(resource))


async def decide(
    session: AsyncSession,
    holdings: Holdings,
    actor_reference: str,
    *,
    assigned: bool,
    categories: Iterable[DataCategory],
    at: datetime,
    purpose: Coding = PURPOSE_COC,
    action: Coding = ACTION_ACCESS,
) -> Decision:
    """Evaluate the client's current Consents (read now, never cached across versions) for one actor."""
    records = [consent_record(doc) for doc in await repository.consents_of(session, holdings.client.id)]
    roles = {ROLE_IRCP} | ({ASSIGNED_PEER_ROLE} if assigned else set())
    request = AccessRequest(
        patient=f"Patient/{holdings.client.id}",
        actor_reference=actor_reference,
        actor_roles=frozenset(roles),
        purpose=purpose,
        action=action,
        items=tuple(holdings.item(c) for c in categories),
        at=at,
    )
    return evaluate(records, request)


def disclosed_resources(decision: Decision, holdings: Holdings) -> list[dict[str, Any]]:
    """The summary's resources: only the elements of permitted categories."""
    permitted = decision.permitted_categories()
    client_id = holdings.client.id
    resources: list[dict[str, Any]] = []
    if permitted & set(build.PATIENT_CATEGORIES):
        resources.append(build.summary_patient(client_id, holdings.patient, permitted))
    if DataCategory.ADMISSION_DISCHARGE in permitted:
        resources.append(build.summary_encounter(holdings.episode.id, client_id, holdings.encounter))
    return resources


def record_disclosure(
    session: AsyncSession,
    client_id: str,
    actor_reference: str,
    actor_name: str,
    decision: Decision,
    requested: Iterable[DataCategory],
    at: datetime,
) -> None:
    """Audit one read of a client's data by a peer: what was disclosed, what withheld, under which Consents."""
    disclosed = decision.permitted_categories()
    audit = build.disclosure_audit_event(
        build.Disclosure(
            audit_id=new_id(),
            client_id=client_id,
            actor_reference=actor_reference,
            actor_name=actor_name,
            purpose=PURPOSE_COC.code,
            disclosed=disclosed,
            withheld=frozenset(requested) - disclosed,
            consent_ids=frozenset(d.consent_id for d in decision.items if d.permitted and d.consent_id is not None),
            recorded_at=at,
        )
    )
    session.add(
        AuditRecord(
            id=audit["id"],
            client_id=client_id,
            actor=actor_reference,
            outcome=audit["outcome"],
            recorded_at=at,
            resource_json=build.to_json(audit),
        )
    )
