"""Who may call Peerway: the OpenID Connect providers it trusts, the people registered under them, the systems
that get Peerway tokens by SMART Backend Services, and the client assertions already used.

Who someone is comes from these rows, never from a token's claims: a token proves (issuer, subject); the
person row says coordinator of site S, organization coordinator of O, peer P, or administrator. An issuer is
bound to the sites and organizations it may speak for, so a peer organization's provider can never make a
hospital coordinator.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint, and_, bindparam, delete, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from service.store.direct import DirectRead
from service.store.models import Base, PeerSupporter, UTCDateTime

ACTIVE, DISABLED = "active", "disabled"


class IdentityIssuer(Base):
    """An OpenID Connect provider whose access tokens identify people (keys by discovery, or pinned)."""

    __tablename__ = "identity_issuer"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # Peerway's name for it
    issuer: Mapped[str] = mapped_column(String(500), unique=True)  # the `iss` its tokens carry
    jwks_json: Mapped[str | None] = mapped_column(Text)  # pinned public keys; None: discovery + jwks_uri
    sites: Mapped[str] = mapped_column(Text, default="")  # space-separated site ids it may speak for
    organizations: Mapped[str] = mapped_column(Text, default="")  # space-separated organization ids
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Person(Base):
    """Someone who signs in with an issuer: what they are in Peerway."""

    __tablename__ = "person"
    __table_args__ = (UniqueConstraint("issuer_id", "subject", name="uq_person_issuer_subject"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    issuer_id: Mapped[str] = mapped_column(ForeignKey("identity_issuer.id"))
    subject: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(32))  # administrator | coordinator | organization-coordinator | peer
    site: Mapped[str | None] = mapped_column(String(64))  # a coordinator's site
    organization_id: Mapped[str | None] = mapped_column(String(64))  # an organization coordinator's
    peer_id: Mapped[str | None] = mapped_column(ForeignKey("peer_supporter.id"))  # a peer's own record
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class SystemClient(Base):
    """A system (a hospital's EHR, a peer organization's back end) registered for SMART Backend Services."""

    __tablename__ = "system_client"

    client_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # ehr | organization
    site: Mapped[str | None] = mapped_column(String(64))  # an EHR's site
    organization_id: Mapped[str | None] = mapped_column(String(64))  # an organization back end's
    jwks_json: Mapped[str | None] = mapped_column(Text)  # its public keys, inline
    jwks_url: Mapped[str | None] = mapped_column(Text)  # or where it publishes them
    scopes: Mapped[str] = mapped_column(Text)  # the SMART v2 scopes it may be granted, space-separated
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class UsedAssertion(Base):
    """A client assertion's jti, kept until the assertion expires: the same assertion never works twice."""

    __tablename__ = "used_assertion"
    __table_args__ = (Index("ix_used_assertion_expiry", "expires_at"),)

    client_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    jti: Mapped[str] = mapped_column(String(255), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())


@dataclass(frozen=True)
class IssuerStatus:
    id: str
    issuer: str
    jwks_json: str | None
    sites: str
    organizations: str
    status: str


@dataclass(frozen=True)
class PersonStatus:
    id: str
    role: str
    site: str | None
    organization_id: str | None
    peer_id: str | None
    status: str


@dataclass(frozen=True)
class PeerStatus:
    id: str
    organization_id: str
    status: str


@dataclass(frozen=True)
class CallerRows:
    """What a person's token is checked against on every request, as stored now: the issuer, the person it
    registered under the subject (None: nobody) and that person's peer record (None: not a peer, or none)."""

    issuer: IssuerStatus
    person: PersonStatus | None
    peer: PeerStatus | None


_ISSUER = (
    IdentityIssuer.id,
    IdentityIssuer.issuer,
    IdentityIssuer.jwks_json,
    IdentityIssuer.sites,
    IdentityIssuer.organizations,
    IdentityIssuer.status,
)
_PERSON = (Person.id, Person.role, Person.site, Person.organization_id, Person.peer_id, Person.status)
_PEER = (PeerSupporter.id, PeerSupporter.organization_id, PeerSupporter.status)
_CALLER_READ = DirectRead(
    select(*_ISSUER, *_PERSON, *_PEER)
    .outerjoin(Person, and_(Person.issuer_id == IdentityIssuer.id, Person.subject == bindparam("subject")))
    .outerjoin(PeerSupporter, PeerSupporter.id == Person.peer_id)
    .where(IdentityIssuer.issuer == bindparam("issuer"))
)


async def caller_rows(engine: AsyncEngine, issuer: str, subject: str) -> CallerRows | None:
    """The issuer registered as `issuer` (None: none is), with the person registered under (it, `subject`) and
    their peer record: one statement in one driver call, one consistent snapshot (service/store/direct.py)
    instead of a session per lookup."""
    rows = await _CALLER_READ.rows(engine, {"issuer": issuer, "subject": subject})
    if not rows:
        return None
    row = rows[0]  # issuer is unique, and so is (issuer, subject): at most one row
    i, p = len(_ISSUER), len(_ISSUER) + len(_PERSON)
    person = PersonStatus(*row[i:p]) if row[i] is not None else None
    peer = PeerStatus(*row[p:]) if row[p] is not None else None
    return CallerRows(IssuerStatus(*row[:i]), person, peer)


async def issuer_by_url(session: AsyncSession, issuer: str) -> IdentityIssuer | None:
    found = await session.execute(select(IdentityIssuer).where(IdentityIssuer.issuer == issuer))
    return found.scalar_one_or_none()


async def person_of(session: AsyncSession, issuer_id: str, subject: str) -> Person | None:
    found = await session.execute(select(Person).where(Person.issuer_id == issuer_id, Person.subject == subject))
    return found.scalar_one_or_none()


async def issuers(session: AsyncSession) -> Sequence[IdentityIssuer]:
    return (await session.execute(select(IdentityIssuer).order_by(IdentityIssuer.id))).scalars().all()


async def people(
    session: AsyncSession, *, site: str | None = None, organization: str | None = None
) -> Sequence[Person]:
    query = select(Person).order_by(Person.issuer_id, Person.subject)
    if site is not None:
        query = query.where(Person.site == site)
    if organization is not None:
        query = query.where(Person.organization_id == organization)
    return (await session.execute(query)).scalars().all()


async def people_of_peer(session: AsyncSession, peer_id: str) -> Sequence[Person]:
    return (await session.execute(select(Person).where(Person.peer_id == peer_id))).scalars().all()


async def system_clients(session: AsyncSession) -> Sequence[SystemClient]:
    return (await session.execute(select(SystemClient).order_by(SystemClient.client_id))).scalars().all()


async def forget_expired_assertions(session: AsyncSession, now: datetime) -> None:
    await session.execute(delete(UsedAssertion).where(UsedAssertion.expires_at < now))
