"""Queries the use cases share. Plain functions over an AsyncSession; no commits here."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from service.store.models import AuditRecord, Client, ConsentDocument, Contact, Episode, PeerSupporter


async def client_by_ehr_id(session: AsyncSession, site: str, ehr_patient_id: str) -> Client | None:
    result = await session.execute(select(Client).where(Client.site == site, Client.ehr_patient_id == ehr_patient_id))
    return result.scalar_one_or_none()


async def episode_by_encounter(session: AsyncSession, client_id: str, ehr_encounter_id: str) -> Episode | None:
    result = await session.execute(
        select(Episode).where(Episode.client_id == client_id, Episode.ehr_encounter_id == ehr_encounter_id)
    )
    return result.scalar_one_or_none()


async def current_episode(session: AsyncSession, client_id: str) -> Episode | None:
    """The client's newest episode (the one the program works in)."""
    result = await session.execute(
        select(Episode).where(Episode.client_id == client_id).order_by(Episode.created_at.desc()).limit(1)
    )
    return result.scalar_one_or_none()


async def episode_of_peer(session: AsyncSession, peer_id: str, client_id: str) -> Episode | None:
    """The client's current episode if — and only if — this peer is assigned to it."""
    episode = await current_episode(session, client_id)
    return episode if episode is not None and episode.peer_id == peer_id else None


async def episodes(session: AsyncSession, *, peer_id: str | None = None) -> Sequence[Episode]:
    query = select(Episode).order_by(Episode.created_at)
    if peer_id is not None:
        query = query.where(Episode.peer_id == peer_id)
    return (await session.execute(query)).scalars().all()


async def peers(session: AsyncSession) -> Sequence[PeerSupporter]:
    return (await session.execute(select(PeerSupporter).order_by(PeerSupporter.name))).scalars().all()


async def consents_of(session: AsyncSession, client_id: str) -> Sequence[ConsentDocument]:
    result = await session.execute(
        select(ConsentDocument).where(ConsentDocument.client_id == client_id).order_by(ConsentDocument.created_at)
    )
    return result.scalars().all()


async def contact_by_app_identifier(session: AsyncSession, peer_id: str, identifier: str) -> Contact | None:
    result = await session.execute(
        select(Contact).where(Contact.peer_id == peer_id, Contact.app_identifier == identifier)
    )
    return result.scalar_one_or_none()


async def audit_of(
    session: AsyncSession, client_id: str, since: datetime | None, until: datetime | None
) -> Sequence[AuditRecord]:
    query = select(AuditRecord).where(AuditRecord.client_id == client_id)
    if since is not None:
        query = query.where(AuditRecord.recorded_at >= since)
    if until is not None:
        query = query.where(AuditRecord.recorded_at < until)
    return (await session.execute(query.order_by(AuditRecord.recorded_at))).scalars().all()
