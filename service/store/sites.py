"""Tables for a regional deployment: sites (hospitals, each with its own EHR connection), peer organizations
and the sites each peer supporter is enabled for.

A site's row says how to reach its EHR. Secrets are not kept here: the channel secret only as its SHA-256
(notifications are attributed to the site whose secret they carry), and the SMART key or static bearer token
as a path to a file the operator keeps. A row without fhir_base_url takes its connection from the
PEERWAY_EHR_* settings (the single-site configuration from before sites existed).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import ForeignKey, String, Text, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from service.store.models import Base, UTCDateTime

DEFAULT_SITE = "default"
DEFAULT_ORGANIZATION = "default"


class Site(Base):
    __tablename__ = "site"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16))  # active | disabled
    fhir_base_url: Mapped[str | None] = mapped_column(Text)
    fhir_version: Mapped[str] = mapped_column(String(16))  # 4.0.1 | 4.3.0 | 5.0.0
    # put | conditional-create | batch | settings (PEERWAY_EHR_WRITE_MODE)
    write_mode: Mapped[str] = mapped_column(String(32))
    token_url: Mapped[str | None] = mapped_column(Text)
    client_id: Mapped[str | None] = mapped_column(String(200))
    private_key_path: Mapped[str | None] = mapped_column(Text)
    key_id: Mapped[str | None] = mapped_column(String(200))
    scope: Mapped[str | None] = mapped_column(Text)
    bearer_token_path: Mapped[str | None] = mapped_column(Text)
    channel_secret_sha256: Mapped[str | None] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class PeerOrganization(Base):
    """A peer-support organization: it owns its peer supporters."""

    __tablename__ = "peer_organization"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class PeerSite(Base):
    """A peer supporter may be matched with clients of this site."""

    __tablename__ = "peer_site"

    peer_id: Mapped[str] = mapped_column(ForeignKey("peer_supporter.id"), primary_key=True)
    site_id: Mapped[str] = mapped_column(ForeignKey("site.id"), primary_key=True)
    enabled_at: Mapped[datetime] = mapped_column(UTCDateTime())


async def site(session: AsyncSession, site_id: str) -> Site | None:
    return await session.get(Site, site_id)


async def sites(session: AsyncSession) -> Sequence[Site]:
    return (await session.execute(select(Site).order_by(Site.id))).scalars().all()


async def site_by_secret_digest(session: AsyncSession, digest: str) -> Site | None:
    found = await session.execute(select(Site).where(Site.channel_secret_sha256 == digest))
    return found.scalar_one_or_none()


async def organizations(session: AsyncSession) -> Sequence[PeerOrganization]:
    return (await session.execute(select(PeerOrganization).order_by(PeerOrganization.id))).scalars().all()


async def sites_of_peer(session: AsyncSession, peer_id: str) -> Sequence[str]:
    found = await session.execute(
        select(PeerSite.site_id).where(PeerSite.peer_id == peer_id).order_by(PeerSite.site_id)
    )
    return found.scalars().all()


async def peer_ids_at(session: AsyncSession, site_id: str) -> Sequence[str]:
    found = await session.execute(select(PeerSite.peer_id).where(PeerSite.site_id == site_id))
    return found.scalars().all()
