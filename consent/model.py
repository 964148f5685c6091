"""The consent engine's records: what a Consent says, what is asked, and what was decided.

All frozen dataclasses with no behaviour beyond small queries; service/fhir/consent.py builds
ConsentRecords from FHIR Consent JSON, consent.engine.evaluate turns them into a Decision.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from consent.categories import DataCategory
from consent.coding import Coding

__all__ = [
    "AccessRequest",
    "ActorRule",
    "Coding",
    "ConsentRecord",
    "Decision",
    "Identifier",
    "ItemDecision",
    "Period",
    "Provision",
    "RequestedItem",
    "as_aware",
]


def as_aware(moment: datetime) -> datetime:
    """`moment` itself when it carries a UTC offset; a naive datetime is read as UTC."""
    if moment.tzinfo is not None and moment.utcoffset() is not None:
        return moment
    return moment.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Period:
    """A span of time; either end may be open. Both ends are inclusive, as in FHIR."""

    start: datetime | None = None
    end: datetime | None = None

    def contains(self, at: datetime) -> bool:
        """Whether `at` lies within the period (naive datetimes are read as UTC)."""
        moment = as_aware(at)
        if self.start is not None and moment < as_aware(self.start):
            return False
        return self.end is None or moment <= as_aware(self.end)


@dataclass(frozen=True, slots=True)
class ActorRule:
    """One `provision.actor`: a role (v3-ParticipationType#IRCP) and/or a reference ("Practitioner/abc")."""

    role: Coding | None
    reference: str | None


@dataclass(frozen=True, slots=True)
class Provision:
    """A rule of a Consent, with nested provisions that are exceptions to it.

    `type` None is read as deny. `classes` holds resource types (http://hl7.org/fhir/resource-types),
    `codes` Peerway data categories (CATEGORY_SYSTEM) or other codes.
    """

    type: Literal["permit", "deny"] | None
    period: Period | None = None
    actors: tuple[ActorRule, ...] = ()
    actions: tuple[Coding, ...] = ()
    purposes: tuple[Coding, ...] = ()
    security_labels: tuple[Coding, ...] = ()
    classes: tuple[Coding, ...] = ()
    codes: tuple[Coding, ...] = ()
    data_period: Period | None = None
    data_refs: tuple[str, ...] = ()
    provisions: tuple[Provision, ...] = ()


@dataclass(frozen=True, slots=True)
class Identifier:
    """A business identifier of a Consent (`Consent.identifier` system and value)."""

    system: str
    value: str

    def __str__(self) -> str:
        return f"{self.system}|{self.value}"


@dataclass(frozen=True, slots=True)
class ConsentRecord:
    """A client's Consent, read from FHIR: only active patient-privacy consents ever share data.

    `identifiers` tie versions of one agreement together (copies sharing one are the same agreement);
    `recorded_at` orders versions that carry the same `date_time` (the time this version was recorded,
    `meta.lastUpdated` of the stored resource).
    """

    id: str
    status: str
    scope: str | None
    patient: str | None
    date_time: datetime | None
    provision: Provision | None
    identifiers: tuple[Identifier, ...] = ()
    recorded_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class RequestedItem:
    """One piece of a client's data someone wants to see, described by what consents can talk about."""

    category: DataCategory
    security_labels: frozenset[Coding] = frozenset()
    resource_types: frozenset[str] = frozenset()
    data_date: datetime | None = None
    reference: str | None = None


@dataclass(frozen=True, slots=True)
class AccessRequest:
    """Who wants which of a client's data, for what purpose, when."""

    patient: str  # the Patient reference the consents are about
    actor_reference: str  # e.g. "Practitioner/p1"
    actor_roles: frozenset[Coding]  # e.g. {ASSIGNED_PEER_ROLE, ROLE_IRCP}
    purpose: Coding  # v3-ActReason, e.g. PURPOSE_COC
    action: Coding  # consentaction access | disclose
    items: tuple[RequestedItem, ...]
    at: datetime  # timezone-aware


@dataclass(frozen=True, slots=True)
class ItemDecision:
    """The answer for one requested item, with the consent and provision that gave it, in plain words."""

    item: RequestedItem
    permitted: bool
    consent_id: str | None
    provision_path: str | None  # e.g. "provision.provision[0]"
    reason: str


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer to an AccessRequest: one ItemDecision per requested item, in request order."""

    items: tuple[ItemDecision, ...]
    obligations: tuple[str, ...] = ()

    def permitted_categories(self) -> frozenset[DataCategory]:
        """Categories with at least one permitted item and no denied item."""
        permitted = {d.item.category for d in self.items if d.permitted}
        denied = {d.item.category for d in self.items if not d.permitted}
        return frozenset(permitted - denied)

    def is_permitted(self, item: RequestedItem) -> bool:
        """True only when `item` was decided here and every decision about it permits it."""
        seen = False
        for decision in self.items:
            if decision.item == item:
                if not decision.permitted:
                    return False
                seen = True
        return seen
