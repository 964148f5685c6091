"""Who may sign in: the OpenID Connect providers Peerway trusts, the people registered under them and the systems
registered for SMART Backend Services. Each change takes effect on the caller's next request (service/app/identity.py
reads these rows on every token)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy.exc import IntegrityError

from service.app.clock import new_id, utcnow
from service.app.identity import PERSON_ROLES, SYSTEM_KINDS
from service.auth import jose, scopes
from service.auth.principal import Role
from service.errors import Conflict, Forbidden, InvalidResource, NotFound
from service.store import identity as store
from service.store.db import SessionFactory, transaction
from service.store.models import PeerSupporter
from service.store.sites import PeerOrganization, Site


@dataclass(frozen=True)
class IssuerView:
    id: str
    issuer: str
    pinned_keys: bool
    sites: tuple[str, ...]
    organizations: tuple[str, ...]
    status: str


@dataclass(frozen=True)
class PersonView:
    id: str
    issuer: str
    subject: str
    role: str
    name: str
    site: str | None
    organization: str | None
    peer_id: str | None
    status: str


@dataclass(frozen=True)
class ClientView:
    client_id: str
    kind: str
    site: str | None
    organization: str | None
    scopes: tuple[str, ...]
    keys: str  # "inline" | the JWKS URL
    status: str


def _issuer_view(row: store.IdentityIssuer) -> IssuerView:
    return IssuerView(
        row.id,
        row.issuer,
        row.jwks_json is not None,
        tuple(row.sites.split()),
        tuple(row.organizations.split()),
        row.status,
    )


def _person_view(row: store.Person) -> PersonView:
    return PersonView(
        row.id, row.issuer_id, row.subject, row.role, row.name, row.site, row.organization_id, row.peer_id, row.status
    )


def _client_view(row: store.SystemClient) -> ClientView:
    return ClientView(
        row.client_id,
        row.kind,
        row.site,
        row.organization_id,
        tuple(row.scopes.split()),
        "inline" if row.jwks_json else (row.jwks_url or ""),
        row.status,
    )


def _checked_jwks(jwks: dict[str, Any] | None) -> str | None:
    """A JWK Set of public keys fit to verify signatures: RSA of 2048 bits or more, or EC."""
    if jwks is None:
        return None
    try:
        public = jose.key_set(jwks)
    except (ValueError, TypeError) as exc:
        raise InvalidResource(f"not a JWK Set ({type(exc).__name__})", "jwks") from None
    if not public.keys:
        raise InvalidResource("the JWK Set holds no RSA or EC key", "jwks")
    for key in public.keys:
        data = key.as_dict(is_private=False)
        if data.get("kty") == "RSA" and jose.rsa_bits(data) < 2048:
            raise InvalidResource("RSA keys must have at least 2048 bits", "jwks")
    return json.dumps({"keys": [k.as_dict(is_private=False) for k in public.keys]})


async def add_issuer(
    sessions: SessionFactory,
    issuer_id: str,
    issuer: str,
    *,
    sites: tuple[str, ...] = (),
    organizations: tuple[str, ...] = (),
    jwks: dict[str, Any] | None = None,
) -> IssuerView:
    """Trust an OpenID Connect provider for the sites and organizations named (and nothing else)."""
    if not issuer.startswith(("https://", "http://")):
        raise InvalidResource("the issuer is its URL, as its tokens' iss says", "issuer")
    now = utcnow()
    try:
        async with transaction(sessions) as session:
            for site in sites:
                if await session.get(Site, site) is None:
                    raise InvalidResource(f"no site {site}", "sites")
            for organization in organizations:
                if await session.get(PeerOrganization, organization) is None:
                    raise InvalidResource(f"no organization {organization}", "organizations")
            row = store.IdentityIssuer(
                id=issuer_id,
                issuer=issuer,
                jwks_json=_checked_jwks(jwks),
                sites=" ".join(sorted(set(sites))),
                organizations=" ".join(sorted(set(organizations))),
                status=store.ACTIVE,
                created_at=now,
                updated_at=now,
            )
            session.add(row)
    except IntegrityError:
        raise Conflict(f"an issuer {issuer_id} or with that URL is registered already") from None
    return _issuer_view(row)


async def list_issuers(sessions: SessionFactory) -> list[IssuerView]:
    async with sessions() as session:
        return [_issuer_view(row) for row in await store.issuers(session)]


async def set_issuer_status(sessions: SessionFactory, issuer_id: str, active: bool) -> IssuerView:
    async with transaction(sessions) as session:
        row = _set_status(await session.get(store.IdentityIssuer, issuer_id), active, f"no issuer {issuer_id}")
    return _issuer_view(row)


@dataclass(frozen=True)
class NewPerson:
    issuer_id: str
    subject: str
    role: Role
    name: str
    site: str | None = None
    organization: str | None = None
    peer_id: str | None = None


async def add_person(sessions: SessionFactory, new: NewPerson, *, organization_scope: str | None = None) -> PersonView:
    """Register who someone is. An administrator registers coordinators, organization coordinators and other
    administrators; an organization's coordinator (`organization_scope`) registers its own peers only."""
    if new.role not in PERSON_ROLES:
        raise InvalidResource(f"role must be one of {sorted(r.value for r in PERSON_ROLES)}", "role")
    if organization_scope is not None and new.role is not Role.PEER:
        raise Forbidden("an organization's coordinator registers peer supporters only")
    now = utcnow()
    try:
        async with transaction(sessions) as session:
            issuer = await session.get(store.IdentityIssuer, new.issuer_id)
            if issuer is None:
                raise InvalidResource(f"no issuer {new.issuer_id}", "issuer")
            await _check_binding(session, new, issuer, organization_scope)
            row = store.Person(
                id=new_id(),
                issuer_id=new.issuer_id,
                subject=new.subject,
                role=new.role.value,
                site=new.site if new.role is Role.COORDINATOR else None,
                organization_id=new.organization if new.role is Role.ORGANIZATION_COORDINATOR else None,
                peer_id=new.peer_id if new.role is Role.PEER else None,
                name=new.name,
                status=store.ACTIVE,
                created_at=now,
                updated_at=now,
            )
            session.add(row)
    except IntegrityError:
        raise Conflict(f"{new.issuer_id} subject {new.subject} is registered already") from None
    return _person_view(row)


async def _check_binding(
    session: Any, new: NewPerson, issuer: store.IdentityIssuer, organization_scope: str | None
) -> None:
    if new.role is Role.COORDINATOR:
        if not new.site or await session.get(Site, new.site) is None:
            raise InvalidResource("a coordinator needs a registered site", "site")
        if new.site not in issuer.sites.split():
            raise InvalidResource(f"issuer {issuer.id} does not speak for site {new.site}", "site")
    elif new.role is Role.ORGANIZATION_COORDINATOR:
        if not new.organization or await session.get(PeerOrganization, new.organization) is None:
            raise InvalidResource("an organization coordinator needs a registered organization", "organization")
        if new.organization not in issuer.organizations.split():
            raise InvalidResource(f"issuer {issuer.id} does not speak for {new.organization}", "organization")
    elif new.role is Role.PEER:
        peer = await session.get(PeerSupporter, new.peer_id) if new.peer_id else None
        if peer is None or (organization_scope is not None and peer.organization_id != organization_scope):
            raise InvalidResource(f"no peer supporter {new.peer_id}", "peer_id")
        if peer.organization_id not in issuer.organizations.split():
            raise InvalidResource(f"issuer {issuer.id} does not speak for {peer.organization_id}", "issuer")


async def list_people(sessions: SessionFactory, *, organization_scope: str | None = None) -> list[PersonView]:
    async with sessions() as session:
        rows = await store.people(session)
        if organization_scope is not None:
            own = {p.id for p in rows if p.peer_id is not None}
            peers = {pid: await session.get(PeerSupporter, pid) for pid in {p.peer_id for p in rows if p.peer_id}}
            rows = [
                p
                for p in rows
                if p.id in own and (peer := peers.get(p.peer_id or "")) and peer.organization_id == organization_scope
            ]
        return [_person_view(row) for row in rows]


async def set_person_status(
    sessions: SessionFactory, person_id: str, active: bool, *, organization_scope: str | None = None
) -> PersonView:
    async with transaction(sessions) as session:
        row = await session.get(store.Person, person_id)
        if row is not None and organization_scope is not None:
            peer = await session.get(PeerSupporter, row.peer_id) if row.peer_id else None
            row = row if peer is not None and peer.organization_id == organization_scope else None
        row = _set_status(row, active, f"no person {person_id}")
    return _person_view(row)


@dataclass(frozen=True)
class NewClient:
    client_id: str
    kind: str  # ehr | organization
    scopes: tuple[str, ...]
    site: str | None = None
    organization: str | None = None
    jwks: dict[str, Any] | None = None
    jwks_url: str | None = None


async def add_client(sessions: SessionFactory, new: NewClient) -> ClientView:
    """Register a system for SMART Backend Services: its keys (inline or URL), its site or organization and
    the scopes it may be granted."""
    if new.kind not in SYSTEM_KINDS:
        raise InvalidResource("kind must be ehr or organization", "kind")
    if (new.jwks is None) == (new.jwks_url is None):
        raise InvalidResource("give the client's public keys inline or their URL, not both", "jwks")
    unknown = [s for s in new.scopes if s not in scopes.SCOPES and not scopes.parse_scopes(s)]
    if unknown or not new.scopes:
        raise InvalidResource(f"scopes must be SMART v2 system scopes, e.g. {sorted(scopes.SCOPES)}", "scopes")
    now = utcnow()
    try:
        async with transaction(sessions) as session:
            if new.kind == "ehr" and (not new.site or await session.get(Site, new.site) is None):
                raise InvalidResource("an EHR client needs a registered site", "site")
            if new.kind == "organization" and (
                not new.organization or await session.get(PeerOrganization, new.organization) is None
            ):
                raise InvalidResource("an organization's client needs a registered organization", "organization")
            row = store.SystemClient(
                client_id=new.client_id,
                kind=new.kind,
                site=new.site if new.kind == "ehr" else None,
                organization_id=new.organization if new.kind == "organization" else None,
                jwks_json=_checked_jwks(new.jwks),
                jwks_url=new.jwks_url,
                scopes=" ".join(sorted(set(new.scopes))),
                status=store.ACTIVE,
                created_at=now,
                updated_at=now,
            )
            session.add(row)
    except IntegrityError:
        raise Conflict(f"client {new.client_id} is registered already") from None
    return _client_view(row)


async def list_clients(sessions: SessionFactory) -> list[ClientView]:
    async with sessions() as session:
        return [_client_view(row) for row in await store.system_clients(session)]


async def set_client_status(sessions: SessionFactory, client_id: str, active: bool) -> ClientView:
    async with transaction(sessions) as session:
        row = _set_status(await session.get(store.SystemClient, client_id), active, f"no client {client_id}")
    return _client_view(row)


_Row = TypeVar("_Row", store.IdentityIssuer, store.Person, store.SystemClient)


def _set_status(row: _Row | None, active: bool, missing: str) -> _Row:
    if row is None:
        raise NotFound(missing)
    row.status = store.ACTIVE if active else store.DISABLED
    row.updated_at = utcnow()
    return row
