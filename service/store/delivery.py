"""Delivery to the EHR: what a contact's Encounter and a client's CareTeam are built from, the contacts'
delivered mark, and which peer's Practitioner was written to which site's EHR lately (shared by every worker
process, so that N workers do not each write it). (The work itself and its dead letters: store/jobs.py;
its claims: store/claims.py.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import cast

from sqlalchemy import String, Table, bindparam, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from service.store.matching import Assignment
from service.store.models import Base, Client, Contact, Episode, PeerSupporter, UTCDateTime


class WrittenPractitioner(Base):
    """A peer's Practitioner as last written to a site's EHR: under which name, at which reference, when."""

    __tablename__ = "written_practitioner"

    site: Mapped[str] = mapped_column(String(64), primary_key=True)
    peer_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    reference: Mapped[str] = mapped_column(String(300))
    written_at: Mapped[datetime] = mapped_column(UTCDateTime())


async def written_practitioner(session: AsyncSession, site: str, peer_id: str) -> WrittenPractitioner | None:
    return await session.get(WrittenPractitioner, (site, peer_id))


async def record_written_practitioner(
    session: AsyncSession, site: str, peer_id: str, name: str, reference: str, at: datetime
) -> None:
    """Remember a write (the caller commits). Two workers recording the same one at once: the first row stays."""
    row = await session.get(WrittenPractitioner, (site, peer_id))
    if row is None:
        try:
            async with session.begin_nested():
                session.add(
                    WrittenPractitioner(site=site, peer_id=peer_id, name=name, reference=reference, written_at=at)
                )
        except IntegrityError:
            return
    else:
        row.name, row.reference, row.written_at = name, reference, at


async def careteam_members(session: AsyncSession, episode_id: str) -> Sequence[Assignment]:
    """Every period of a peer with the episode (its assignment history), oldest first: the CareTeam's members."""
    result = await session.execute(
        select(Assignment).where(Assignment.episode_id == episode_id).order_by(Assignment.started_at, Assignment.id)
    )
    return result.scalars().all()


@dataclass(frozen=True)
class ContactState:
    """What a contact's Encounter is built from: the contact, its peer, its client and the client's stay."""

    contact_id: str
    kind: str
    started_at: datetime
    minutes: int
    status: str
    peer_id: str
    peer_name: str
    site: str
    ehr_patient_id: str
    ehr_encounter_id: str


_CONTACT, _EPISODE, _PEER, _CLIENT = (
    cast(Table, model.__table__).c for model in (Contact, Episode, PeerSupporter, Client)
)
# Core on the tables (an ORM select of the same columns went through the ORM's compile and result steps).
_CONTACT_STATES = (
    select(
        _CONTACT.id,
        _CONTACT.kind,
        _CONTACT.started_at,
        _CONTACT.minutes,
        _CONTACT.status,
        _PEER.id,
        _PEER.name,
        _CLIENT.site,
        _CLIENT.ehr_patient_id,
        _EPISODE.ehr_encounter_id,
    )
    .select_from(
        cast(Table, Contact.__table__)
        .join(cast(Table, Episode.__table__), _EPISODE.id == _CONTACT.episode_id)
        .join(cast(Table, PeerSupporter.__table__), _PEER.id == _CONTACT.peer_id)
        .join(cast(Table, Client.__table__), _CLIENT.id == _EPISODE.client_id)
    )
    .where(_CONTACT.id.in_(bindparam("ids", expanding=True)))
)


async def contact_states(session: AsyncSession, contact_ids: Sequence[str]) -> Sequence[ContactState]:
    """Each contact with its episode, peer and client (what its Encounter is built from), in one query of plain
    rows (no ORM objects: the worker reads a batch of them for every claim)."""
    result = await session.execute(_CONTACT_STATES, {"ids": list(contact_ids)})
    return [ContactState(*tuple(row)) for row in result.all()]


_CONTACTS = cast(Table, Contact.__table__)
# Core, built once: as an ORM update(Contact) each batch's mark went through the ORM's bulk-update path.
_MARK_DELIVERED = (
    update(_CONTACTS)
    .where(_CONTACTS.c.id.in_(bindparam("ids", expanding=True)), _CONTACTS.c.delivered_at.is_(None))
    .values(delivered_at=bindparam("now", type_=UTCDateTime()))
)


async def mark_contacts_delivered(session: AsyncSession, contact_ids: Sequence[str], now: datetime) -> None:
    if not contact_ids:
        return
    await session.execute(_MARK_DELIVERED, {"ids": list(contact_ids), "now": now})
