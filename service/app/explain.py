"""Coordinators ask why a peer does or does not see each category: the deciding Consent and provision, in words.

Only coordinators get this; a peer's app receives the data and never the reasons.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import fhir_profiles
from consent import DataCategory, ItemDecision
from service.app.clock import utcnow
from service.app.sharing import FetchState, Holdings, decide
from service.errors import InvalidResource, NotFound
from service.store import repository
from service.store.db import SessionFactory
from service.store.models import PeerSupporter


@dataclass(frozen=True)
class CategoryExplanation:
    category: str
    display: str
    shared: bool
    held: bool  # whether Peerway holds data of this category for the client today
    consent: str | None
    provision: str | None
    reason: str
    items: int = 0  # background items held (appointments, goals...), 0 for the notification's categories
    withheld_items: int = 0  # of them (or of the contact details' parts), those this peer does not see
    fetch: FetchState | None = None  # the last read of the category from the EHR, if any


@dataclass(frozen=True)
class Explanation:
    client_id: str
    peer_id: str
    assigned: bool
    at: datetime
    categories: tuple[CategoryExplanation, ...]


async def explain_sharing(
    sessions: SessionFactory, site: str, client_id: str, peer_id: str | None, at: datetime | None = None
) -> Explanation:
    """Evaluate every data category for the peer (the assigned one unless another is named), with reasons."""
    at = at or utcnow()
    if at.tzinfo is None:
        raise InvalidResource("at needs a time zone", "at")
    async with sessions() as session:
        client = await repository.client_at(session, site, client_id)
        episode = await repository.current_episode(session, client_id) if client is not None else None
        if client is None or episode is None:
            raise NotFound(f"Patient/{client_id} is not known")
        peer_id = peer_id or episode.peer_id
        if peer_id is None:
            raise InvalidResource("no peer supporter is assigned to this client: name one with peer_id", "peer_id")
        known = await session.get(PeerSupporter, peer_id) is not None
        if not known or (peer_id != episode.peer_id and not await repository.peer_enabled_at(session, peer_id, site)):
            raise InvalidResource(f"no peer supporter {peer_id}", "peer_id")
        assigned = episode.peer_id == peer_id
        holdings = await Holdings.load(session, client, episode)
        decision = await decide(
            session, holdings, f"Practitioner/{peer_id}", assigned=assigned, categories=list(DataCategory), at=at
        )
    return Explanation(
        client_id=client_id,
        peer_id=peer_id,
        assigned=assigned,
        at=at,
        categories=tuple(_explained(c, decision.items, holdings) for c in DataCategory),
    )


def _explained(category: DataCategory, decisions: Sequence[ItemDecision], holdings: Holdings) -> CategoryExplanation:
    """One row per category: shared when something of it is shown; the reason of the first item withheld when
    some are, else of the first item."""
    mine = [d for d in decisions if d.item.category == category]
    withheld = [d for d in mine if not d.permitted]
    shown = [d for d in mine if d.permitted]
    deciding = (withheld or shown)[0]
    reason = deciding.reason
    if shown and withheld:
        reason = f"{len(shown)} of {len(mine)} items shared; withheld: {deciding.reason}"
    first = (shown or mine)[0]
    return CategoryExplanation(
        category=category.value,
        display=fhir_profiles.display(fhir_profiles.DATA_CATEGORY_SYSTEM, category.value),
        shared=bool(shown),
        held=category in holdings.held_categories(),
        consent=f"Consent/{first.consent_id}" if first.consent_id else None,
        provision=first.provision_path,
        reason=reason,
        items=sum(1 for i in holdings.items if i.category == category),
        withheld_items=len(withheld) if shown else 0,
        fetch=next((f for f in holdings.fetches if f.category == category), None),
    )
