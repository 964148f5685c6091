"""Clients' identifiers as the EHR gave them (system and a SHA-256 of the value), so that a deployment can link
one person's records at several sites by a shared identifier such as a provincial health number."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import ForeignKey, Index, String, delete, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from service.store.models import Base, Client


class ClientIdentifier(Base):
    __tablename__ = "client_identifier"
    __table_args__ = (Index("ix_client_identifier_value", "system", "value_sha256"),)

    client_id: Mapped[str] = mapped_column(ForeignKey("client.id"), primary_key=True)
    system: Mapped[str] = mapped_column(String(300), primary_key=True)
    value_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)


async def replace_identifiers(session: AsyncSession, client_id: str, digests: Iterable[tuple[str, str]]) -> None:
    await session.execute(delete(ClientIdentifier).where(ClientIdentifier.client_id == client_id))
    for system, digest in sorted(set(digests)):
        session.add(ClientIdentifier(client_id=client_id, system=system, value_sha256=digest))


async def digest_of(session: AsyncSession, client_id: str, system: str) -> Sequence[str]:
    found = await session.execute(
        select(ClientIdentifier.value_sha256).where(
            ClientIdentifier.client_id == client_id, ClientIdentifier.system == system
        )
    )
    return found.scalars().all()


async def clients_sharing(
    session: AsyncSession, system: str, digests: Sequence[str], other_than: str
) -> Sequence[Client]:
    """Clients of every site other than `other_than` holding one of these identifier digests."""
    if not digests:
        return []
    found = await session.execute(
        select(Client)
        .join(ClientIdentifier, ClientIdentifier.client_id == Client.id)
        .where(
            ClientIdentifier.system == system,
            ClientIdentifier.value_sha256.in_(digests),
            Client.site != other_than,
        )
        .distinct()
        .order_by(Client.site, Client.id)
    )
    return found.scalars().all()
