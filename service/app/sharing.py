"""What Peerway holds about a client, per data category, and the consent decision over it.

The summary (peer), the explanation (coordinator) and the CDS Hooks consult (EHR) all ask here, so they
can never disagree about what a client's consents allow.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from consent import AccessRequest, Coding, ConsentRecord, DataCategory, Decision, RequestedItem, evaluate
from consent.categories import (
    ACTION_ACCESS,
    ASSIGNED_PEER_ROLE,
    CONFIDENTIALITY_SYSTEM,
    PURPOSE_COC,
    ROLE_IRCP,
)
from service.app.clock import new_id
from service.app.consents import consent_record
from service.fhir import build
from service.fhir.background import minimal_address, stale_outcome
from service.store import repository
from service.store.background import FAILED
from service.store.models import Client, Episode

_CATEGORY_VALUES = frozenset(c.value for c in DataCategory)
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
# The categories whose data come with the hospital's notification (the Patient and the stay).
HELD: tuple[DataCategory, ...] = (
    DataCategory.PREFERRED_NAME,
    DataCategory.CONTACT_DETAILS,
    DataCategory.ADMISSION_DISCHARGE,
)
# Street lines of an address are shared only under a permit that names this label (see consent/README.md).
STREET_LABEL = Coding(CONFIDENTIALITY_SYSTEM, "R")


@dataclass(frozen=True)
class HeldItem:
    """One item of background read from the EHR, as kept (service/store/background.py)."""

    id: str
    category: DataCategory
    resource: dict[str, Any]
    labels: frozenset[Coding]
    data_date: datetime | None

    @property
    def reference(self) -> str:
        return f"{self.resource['resourceType']}/{self.id}"


@dataclass(frozen=True)
class FetchState:
    category: DataCategory
    status: str  # ok | failed
    attempted_at: datetime
    succeeded_at: datetime | None
    items: int
    error: str | None


@dataclass(frozen=True)
class ClientRef:
    """The client a decision is about (its id), whether read as an ORM object or as columns."""

    id: str


@dataclass(frozen=True)
class EpisodeRef:
    """What a decision reads of the client's current episode."""

    id: str
    peer_id: str | None
    admitted_at: datetime | None


@dataclass(frozen=True)
class Holdings:
    """The client's snapshots and background as stored, read once per request."""

    client: ClientRef
    episode: EpisodeRef
    patient: dict[str, Any]
    encounter: dict[str, Any]
    items: tuple[HeldItem, ...] = ()
    fetches: tuple[FetchState, ...] = ()
    # The client's Consents as read with the background (load), or None: decide() then reads them itself.
    consents: tuple[ConsentRecord, ...] | None = None

    @classmethod
    def of(cls, client: Client, episode: Episode) -> Holdings:
        return cls(
            ClientRef(client.id),
            EpisodeRef(episode.id, episode.peer_id, episode.admitted_at),
            json.loads(client.patient_json),
            json.loads(episode.encounter_json),
        )

    @classmethod
    async def load(cls, session: AsyncSession, client: Client, episode: Episode) -> Holdings:
        """The snapshots and the background items the worker fetched, with their fetch state."""
        return await cls._load(
            session,
            ClientRef(client.id),
            EpisodeRef(episode.id, episode.peer_id, episode.admitted_at),
            client.patient_json,
            episode.encounter_json,
        )

    @classmethod
    def of_view(cls, view: repository.PeerView, rows: repository.DecisionRows) -> Holdings:
        """As load, from what the peer's summary read in one statement (repository.peer_summary_rows)."""
        episode = EpisodeRef(view.episode_id, view.peer_id, view.admitted_at)
        return cls._of_rows(ClientRef(view.client_id), episode, view.patient_json, view.encounter_json, rows)

    @classmethod
    async def _load(
        cls, session: AsyncSession, client: ClientRef, episode: EpisodeRef, patient_json: str, encounter_json: str
    ) -> Holdings:
        rows = await repository.decision_rows(session, client.id)
        return cls._of_rows(client, episode, patient_json, encounter_json, rows)

    @classmethod
    def _of_rows(
        cls,
        client: ClientRef,
        episode: EpisodeRef,
        patient_json: str,
        encounter_json: str,
        rows: repository.DecisionRows,
    ) -> Holdings:
        items = tuple(
            HeldItem(
                id=item_id,
                category=DataCategory(category),
                resource=json.loads(resource_json),
                labels=frozenset(Coding(system=s, code=c) for s, c in json.loads(labels_json)),
                data_date=data_date,
            )
            for item_id, category, resource_json, labels_json, data_date in rows.items
            if category in _CATEGORY_VALUES
        )
        fetches = tuple(FetchState(DataCategory(f[0]), *f[1:]) for f in rows.fetches if f[0] in _CATEGORY_VALUES)
        consents = tuple(consent_record(text) for text in rows.consents)
        patient, encounter = json.loads(patient_json), json.loads(encounter_json)
        return cls(client, episode, patient, encounter, items, fetches, consents)

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

    def street_item(self) -> RequestedItem:
        """The street lines of the client's address: contact details that also carry STREET_LABEL."""
        return RequestedItem(
            DataCategory.CONTACT_DETAILS,
            _labels(self.patient) | {STREET_LABEL},
            frozenset({"Patient"}),
            reference=f"Patient/{self.client.id}#address.line",
        )

    def has_street(self) -> bool:
        return any(a.get("line") for a in minimal_address(self.patient.get("address"), street=True))

    def requested(self, categories: Iterable[DataCategory]) -> tuple[RequestedItem, ...]:
        """What to ask the engine: one item per held background item, else one per category (and the street
        lines apart from the rest of the contact details). A category the Patient or the stay holds is asked
        for too when the client's own answers add items to it (contact times are contact details as well)."""
        asked: list[RequestedItem] = []
        for category in categories:
            held = [i for i in self.items if i.category == category]
            asked += [
                RequestedItem(
                    category,
                    i.labels,
                    frozenset({i.resource["resourceType"]}),
                    data_date=i.data_date,
                    reference=i.reference,
                )
                for i in held
            ]
            if held and category not in HELD:
                continue
            asked.append(self.item(category))
            if category == DataCategory.CONTACT_DETAILS and self.has_street():
                asked.append(self.street_item())
        return tuple(asked)

    def held_categories(self) -> frozenset[DataCategory]:
        """Categories Peerway holds data of for the client: the notification's, and background items'."""
        return frozenset(HELD) | {i.category for i in self.items}

    def fetched_categories(self) -> frozenset[DataCategory]:
        """Categories the worker has tried to read from the EHR (with or without finding anything)."""
        return frozenset(f.category for f in self.fetches)


def shared_categories(decision: Decision) -> frozenset[DataCategory]:
    """Categories of which something is shown: at least one permitted item (other items may be withheld)."""
    return frozenset(d.item.category for d in decision.items if d.permitted)


def _base_permitted(decision: Decision, category: DataCategory) -> bool:
    """The category-level item (no reference) is permitted, and no other decision about it withholds it."""
    base = [d for d in decision.items if d.item.category == category and d.item.reference is None]
    return bool(base) and all(d.permitted for d in base)


def permitted_references(decision: Decision) -> frozenset[str]:
    """The background items' references the decision releases (every decision about each permits it)."""
    by_reference: dict[str, bool] = {}
    for d in decision.items:
        if d.item.reference is not None:
            by_reference[d.item.reference] = by_reference.get(d.item.reference, True) and d.permitted
    return frozenset(r for r, ok in by_reference.items() if ok)


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
    """Evaluate the client's current Consents (read now, with the holdings or here; never cached across versions)
    for one actor."""
    records = holdings.consents
    if records is None:
        records = tuple(
            consent_record(d.resource_json) for d in await repository.consents_of(session, holdings.client.id)
        )
    return decide_over(
        records,
        holdings,
        actor_reference,
        assigned=assigned,
        categories=categories,
        at=at,
        purpose=purpose,
        action=action,
    )


def decide_over(
    records: Sequence[ConsentRecord],
    holdings: Holdings,
    actor_reference: str,
    *,
    assigned: bool,
    categories: Iterable[DataCategory],
    at: datetime,
    purpose: Coding = PURPOSE_COC,
    action: Coding = ACTION_ACCESS,
) -> Decision:
    """As decide, over Consents already read (the holdings' own, read in the same statement)."""
    roles = {ROLE_IRCP} | ({ASSIGNED_PEER_ROLE} if assigned else set())
    request = AccessRequest(
        patient=f"Patient/{holdings.client.id}",
        actor_reference=actor_reference,
        actor_roles=frozenset(roles),
        purpose=purpose,
        action=action,
        items=holdings.requested(categories),
        at=at,
    )
    return evaluate(records, request)


def disclosed_resources(decision: Decision, holdings: Holdings) -> list[dict[str, Any]]:
    """The summary's resources: only permitted items, and of the Patient only the permitted categories'
    elements; then an OperationOutcome naming the shown categories whose last read from the EHR failed."""
    resources = permitted_resources(decision, holdings)
    stale = stale_categories(decision, holdings)
    if stale:
        resources.append(stale_notice(stale))
    return resources


def permitted_resources(decision: Decision, holdings: Holdings) -> list[dict[str, Any]]:
    """The permitted items, and of the Patient only the permitted categories' elements (no stale notice)."""
    client_id = holdings.client.id
    patient_categories = frozenset(c for c in build.PATIENT_CATEGORIES if _base_permitted(decision, c))
    released = permitted_references(decision)
    street = holdings.street_item().reference in released
    resources: list[dict[str, Any]] = []
    if patient_categories:
        resources.append(build.summary_patient(client_id, holdings.patient, patient_categories, street=street))
    if _base_permitted(decision, DataCategory.ADMISSION_DISCHARGE):
        resources.append(build.summary_encounter(holdings.episode.id, client_id, holdings.encounter))
    resources += [i.resource for i in holdings.items if i.reference in released]
    return resources


Stale = tuple[tuple[DataCategory, datetime | None], ...]


def stale_categories(decision: Decision, holdings: Holdings) -> Stale:
    """The shown categories whose last read from the EHR failed, with the time of the last success."""
    shown = shared_categories(decision)
    return tuple((f.category, f.succeeded_at) for f in holdings.fetches if f.status == FAILED and f.category in shown)


def stale_notice(stale: Stale) -> dict[str, Any]:
    """The OperationOutcome naming stale categories: a notice with an id of its own, not a resource to fetch again."""
    return {"id": new_id(), **stale_outcome(stale)}
