"""A consent decision service others can call: CDS Hooks `patient-consent-consult`, as LEAP defines it.

The request context names the patient, the actor, the purpose of use, the consent category (scope) and the
classes of data; the answer is one card: NO_CONSENT, CONSENT_PERMIT or CONSENT_DENY, with obligations. A
permit that covers only part of what was asked is CONSENT_PERMIT with a REDACT obligation naming the data
categories to withhold.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import fhir_profiles
from consent import Coding, DataCategory, Decision
from consent.categories import ACT_REASON_SYSTEM, CATEGORY_SYSTEM, PATIENT_PRIVACY, RESOURCE_TYPE_SYSTEMS
from service.app.clock import utcnow
from service.app.sharing import SOURCE_TYPES, Holdings, decide, shared_categories
from service.errors import InvalidResource
from service.store import repository
from service.store.db import SessionFactory
from service.store.models import Client

NO_CONSENT = "NO_CONSENT"
CONSENT_PERMIT = "CONSENT_PERMIT"
CONSENT_DENY = "CONSENT_DENY"
REDACT = {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "REDACT"}


@dataclass(frozen=True)
class Identifier:
    system: str | None
    value: str


@dataclass(frozen=True)
class ConsultQuery:
    patient_ids: Sequence[Identifier]
    actors: Sequence[Identifier] = ()
    purposes: Sequence[str] = ("COC",)
    scopes: Sequence[str] = (PATIENT_PRIVACY,)
    classes: Sequence[tuple[str, str]] = ()


@dataclass(frozen=True)
class ConsultAnswer:
    decision: str
    detail: str
    obligations: list[dict[str, object]] = field(default_factory=list)

    @property
    def indicator(self) -> str:
        return {NO_CONSENT: "warning", CONSENT_PERMIT: "info"}.get(self.decision, "critical")


def _categories(classes: Sequence[tuple[str, str]]) -> list[DataCategory]:
    """Our data categories named directly, or through the resource types that hold them; none named: all."""
    if not classes:
        return list(DataCategory)
    chosen: list[DataCategory] = []
    for system, code in classes:
        if system == CATEGORY_SYSTEM and code in DataCategory._value2member_map_:
            chosen.append(DataCategory(code))
        elif system in RESOURCE_TYPE_SYSTEMS:  # R4's resource-types or R5's fhir-types
            chosen += [c for c, source in SOURCE_TYPES.items() if source == code]
        else:
            raise InvalidResource(f"unknown class {system}|{code}", "context.class")
    if not chosen:
        raise InvalidResource("no Peerway data category matches the classes asked for", "context.class")
    return list(dict.fromkeys(chosen))


def _actor(actors: Sequence[Identifier], episode_peer: str | None) -> tuple[str, bool]:
    """(the actor as a Consent would name it, whether it is the client's assigned peer)."""
    for actor in actors:
        if actor.system == fhir_profiles.PEER_IDENTIFIER_SYSTEM:
            return f"Practitioner/{actor.value}", actor.value == episode_peer
        if actor.system is None and actor.value.count("/") == 1:
            return actor.value, actor.value == f"Practitioner/{episode_peer}"
    # An identifier we cannot map to a reference matches only provisions that name no one.
    first = actors[0] if actors else Identifier(None, "unknown")
    return f"{first.system}|{first.value}", False


async def consult(sessions: SessionFactory, site: str, query: ConsultQuery) -> ConsultAnswer:
    """Decide for every purpose asked (all must be permitted) over the categories the classes name."""
    if PATIENT_PRIVACY not in query.scopes:
        return ConsultAnswer(NO_CONSENT, "Peerway keeps patient-privacy consents only.")
    categories = _categories(query.classes)
    now = utcnow()
    async with sessions() as session:
        holdings = None
        for identifier in query.patient_ids:
            client = await session.get(Client, identifier.value)
            if client is None or client.site != site:
                client = await repository.client_by_ehr_id(session, site, identifier.value)
            episode = await repository.current_episode(session, client.id) if client is not None else None
            if client is not None and episode is not None:
                holdings = await Holdings.load(session, client, episode)
                break
        if holdings is None:
            return ConsultAnswer(NO_CONSENT, "No applicable consent was found.")
        actor, assigned = _actor(query.actors, holdings.episode.peer_id)
        decisions = [
            await decide(
                session,
                holdings,
                actor,
                assigned=assigned,
                categories=categories,
                at=now,
                purpose=Coding(ACT_REASON_SYSTEM, purpose),
            )
            for purpose in query.purposes
        ]
    return _answer(decisions)


def _answer(decisions: Sequence[Decision]) -> ConsultAnswer:
    """Per category: withheld when no item of it is permitted (for every purpose asked); a shared category whose
    other items are withheld (an SUD-labelled appointment among others) asks to REDACT their security labels."""
    items = [d for decision in decisions for d in decision.items]
    if all(d.consent_id is None for d in items):
        return ConsultAnswer(NO_CONSENT, "No applicable consent was found.")
    categories = list(dict.fromkeys(d.item.category for d in items))
    per_purpose = [shared_categories(decision) for decision in decisions]
    shared = sorted(c.value for c in categories if all(c in ok for ok in per_purpose))
    withheld = sorted(c.value for c in categories if c.value not in shared)
    reasons = "; ".join(dict.fromkeys(d.reason for d in items))
    if not shared:
        return ConsultAnswer(CONSENT_DENY, reasons)
    labels = sorted(
        {
            (label.system, label.code)
            for d in items
            if not d.permitted and d.item.category in shared
            for label in d.item.security_labels
        }
    )
    codes = [{"system": CATEGORY_SYSTEM, "code": c} for c in withheld] + [
        {"system": system, "code": code} for system, code in labels
    ]
    if not codes:
        return ConsultAnswer(CONSENT_PERMIT, reasons)
    return ConsultAnswer(CONSENT_PERMIT, reasons, [{"id": REDACT, "parameters": {"codes": codes}}])
