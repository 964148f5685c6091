"""Delivery to the EHR: what a contact's Encounter and a client's CareTeam are built from, and the contacts'
delivered mark. (The work itself, its claims and dead letters: store/jobs.py.)
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from service.store.matching import Assignment
from service.store.models import Client, Contact, Episode, PeerSupporter


async def careteam_members(session: AsyncSession, episode_id: str) -> Sequence[Assignment]:
    """Every period of a peer with the episode (its assignment history), oldest first: the CareTeam's members."""
    result = await session.execute(
        select(Assignment).where(Assignment.episode_id == episode_id).order_by(Assignment.started_at, Assignment.id)
    )
    return result.scalars().all()


ContactState = tuple[Contact, Episode, PeerSupporter, Client]


async def contact_states(session: AsyncSession, contact_ids: Sequence[str]) -> Sequence[ContactState]:
    """Each contact with its episode, peer and client (what its Encounter is built from), in one query."""
    result = await session.execute(
        select(Contact, Episode, PeerSupporter, Client)
        .join(Episode, Episode.id == Contact.episode_id)
        .join(PeerSupporter, PeerSupporter.id == Contact.peer_id)
        .join(Client, Client.id == Episode.client_id)
        .where(Contact.id.in_(contact_ids))
    )
    return [(c, e, p, cl) for c, e, p, cl in result.all()]


async def mark_contacts_delivered(session: AsyncSession, contact_ids: Sequence[str], now: datetime) -> None:
    if not contact_ids:
        return
    await session.execute(
        update(Contact)
        .where(Contact.id.in_(contact_ids), Contact.delivered_at.is_(None))
        .values(delivered_at=now)
        .execution_options(synchronize_session=False)
    )
