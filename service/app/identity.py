"""Who is calling, from a bearer token, and the registry that says so; Peerway's token endpoint for systems.

Three kinds of token, told apart by their issuer:
- Peerway's own (SMART Backend Services, issued at /auth/token to a registered system client): the client's row
  says which site (an EHR) or organization (a back end) it acts for; its scopes say which routes it may use.
- An OpenID Connect provider's, registered with `peerway issuer add`: the token proves (issuer, subject); the
  person registered under that pair says what they are. The issuer must be bound to the person's site or
  organization (a peer organization's provider never vouches for a hospital coordinator), the person and issuer
  active, and a peer's record not retired: disabling any of them cuts access on the very next request.
- In development only (PEERWAY_ENV=dev), HS256 tokens from `peerway token` with the role in their claims.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy.exc import IntegrityError

from service.app.clock import new_id, utcnow
from service.auth import jose, keys, scopes
from service.auth.dev import verify_token as verify_dev_token
from service.auth.people import IssuerKeys, TokenPolicy, verify_person_token
from service.auth.principal import Principal, Role
from service.auth.systems import (
    ClientKeys,
    access_token,
    assertion_client,
    check_assertion,
    registered_keys,
    verify_access_token,
)
from service.errors import Conflict, Forbidden, InvalidResource, NotFound, Unauthorized
from service.settings import Settings
from service.store import identity as store
from service.store.db import SessionFactory, transaction
from service.store.models import PeerSupporter
from service.store.sites import PeerOrganization, Site

PERSON_ROLES = frozenset({Role.ADMINISTRATOR, Role.COORDINATOR, Role.ORGANIZATION_COORDINATOR, Role.PEER})
SYSTEM_KINDS = {"ehr": Role.EHR_SYSTEM, "organization": Role.ORGANIZATION_COORDINATOR}


class Gatekeeper:
    """What turns a bearer token into a Principal: the keys it needs, kept for the process's life."""

    def __init__(
        self, settings: Settings, sessions: SessionFactory, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.issuer_keys = IssuerKeys(
            transport,
            cache_seconds=settings.issuer_keys_cache_seconds,
            refresh_seconds=settings.issuer_keys_refresh_seconds,
        )
        self.client_keys = ClientKeys(transport)
        self._keys_path = Path(settings.auth_keys_path)
        self._signing_keys = keys.load_or_create(self._keys_path)
        self._keys_changed = self._keys_path.stat().st_mtime_ns

    @property
    def issuer(self) -> str:
        """Peerway's own issuer: its authorization server for systems."""
        return f"{self.settings.base_url}/auth"

    @property
    def token_url(self) -> str:
        return f"{self.settings.base_url}/auth/token"

    @property
    def signing_keys(self) -> keys.SigningKeys:
        """Peerway's keys, read again when the file changed (`peerway auth rotate-key` in another process)."""
        try:
            changed = self._keys_path.stat().st_mtime_ns
        except OSError:
            return self._signing_keys
        if changed != self._keys_changed:
            self._signing_keys, self._keys_changed = keys.load_or_create(self._keys_path), changed
        return self._signing_keys

    # --- resolving a caller --------------------------------------------------------------------------------

    async def principal(self, token: str) -> Principal:
        header, claims = jose.unverified_parts(token)
        issuer = claims.get("iss")
        if issuer == self.issuer:
            return await self._system(token)
        if header.get("alg") == "HS256":
            if self.settings.env != "dev":
                raise Unauthorized("development tokens are accepted only when PEERWAY_ENV=dev")
            return verify_dev_token(self.settings, token)
        if not isinstance(issuer, str):
            raise Unauthorized("the token names no issuer")
        return await self._person(token, issuer)

    async def _system(self, token: str) -> Principal:
        claims = verify_access_token(
            token,
            self.signing_keys,
            issuer=self.issuer,
            audience=self.settings.base_url,
            leeway=self.settings.token_leeway_seconds,
        )
        async with self.sessions() as session:
            client = await session.get(store.SystemClient, str(claims["sub"]))
        if client is None or client.status != store.ACTIVE:
            raise Forbidden("this system client is not registered or is disabled")
        granted = scopes.parse_scopes(str(claims["scope"])) & scopes.parse_scopes(client.scopes)
        return Principal(
            subject=client.client_id,
            role=SYSTEM_KINDS[client.kind],
            site=client.site or "",
            organization=client.organization_id,
            scopes=granted,
        )

    async def _person(self, token: str, issuer_url: str) -> Principal:
        async with self.sessions() as session:
            issuer = await store.issuer_by_url(session, issuer_url)
        if issuer is None or issuer.status != store.ACTIVE:
            raise Unauthorized("tokens of this issuer are not accepted")
        policy = TokenPolicy(
            audience=self.settings.auth_audience,
            leeway_seconds=self.settings.token_leeway_seconds,
            max_lifetime_seconds=self.settings.person_token_max_lifetime_seconds,
        )
        pinned = json.loads(issuer.jwks_json) if issuer.jwks_json else None
        claims = await verify_person_token(token, issuer.issuer, pinned, self.issuer_keys, policy)
        async with self.sessions() as session:
            person = await store.person_of(session, issuer.id, str(claims["sub"]))
            peer = await session.get(PeerSupporter, person.peer_id) if person and person.peer_id else None
        if person is None:
            raise Forbidden("this account is not registered in Peerway")
        if person.status != store.ACTIVE:
            raise Forbidden("this account is disabled")
        return _person_principal(person, issuer, peer)


def _person_principal(person: store.Person, issuer: store.IdentityIssuer, peer: PeerSupporter | None) -> Principal:
    role = Role(person.role)
    sites, organizations = issuer.sites.split(), issuer.organizations.split()
    if role is Role.COORDINATOR:
        if person.site not in sites:
            raise Forbidden("this issuer does not speak for the account's site")
        return Principal(subject=person.id, role=role, site=person.site, person_id=person.id)
    if role is Role.ORGANIZATION_COORDINATOR:
        if person.organization_id not in organizations:
            raise Forbidden("this issuer does not speak for the account's organization")
        return Principal(
            subject=person.id, role=role, site="", organization=person.organization_id, person_id=person.id
        )
    if role is Role.PEER:
        if peer is None or peer.organization_id not in organizations:
            raise Forbidden("this issuer does not speak for the peer supporter's organization")
        if peer.status == "inactive":
            raise Forbidden("this peer supporter is no longer active")
        return Principal(subject=peer.id, role=role, site="", organization=peer.organization_id, person_id=person.id)
    return Principal(subject=person.id, role=role, site="", person_id=person.id)


# --- the token endpoint ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IssuedToken:
    access_token: str
    expires_in: int
    scope: str


async def issue_system_token(gate: Gatekeeper, form: dict[str, str]) -> IssuedToken:
    """client_credentials with a private_key_jwt assertion (SMART Backend Services)."""
    if form.get("grant_type") != "client_credentials":
        raise InvalidResource("grant_type must be client_credentials", "grant_type")
    if form.get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer":
        raise InvalidResource("client_assertion_type must be the JWT bearer type", "client_assertion_type")
    assertion = form.get("client_assertion") or ""
    client_id = assertion_client(assertion)
    async with gate.sessions() as session:
        client = await session.get(store.SystemClient, client_id)
    if client is None or client.status != store.ACTIVE:
        raise Unauthorized("unknown or disabled client")
    header, _ = jose.unverified_parts(assertion)
    kid = header.get("kid") if isinstance(header.get("kid"), str) else None
    if client.jwks_json:
        client_keys = registered_keys(json.loads(client.jwks_json))
    elif client.jwks_url:
        client_keys = await gate.client_keys.keys(client.jwks_url, kid)
    else:
        raise Unauthorized("the client has no registered keys")
    checked = check_assertion(
        assertion, client_keys, client_id=client_id, token_url=gate.token_url, leeway=gate.settings.token_leeway_seconds
    )
    allowed = scopes.parse_scopes(client.scopes)
    asked = scopes.parse_scopes(form.get("scope") or "")
    granted = frozenset(s for s in asked if scopes.covers(allowed, s)) if asked else allowed
    if not granted:
        raise Forbidden("none of the scopes asked for is registered for this client")
    now = utcnow()
    try:
        async with transaction(gate.sessions) as session:
            await store.forget_expired_assertions(session, now)
            session.add(
                store.UsedAssertion(
                    client_id=client_id, jti=checked.jti, expires_at=datetime.fromtimestamp(checked.expires_at, UTC)
                )
            )
    except IntegrityError:
        raise Unauthorized("this client assertion was used already") from None
    lifetime = gate.settings.system_token_lifetime_seconds
    token = access_token(
        gate.signing_keys,
        issuer=gate.issuer,
        audience=gate.settings.base_url,
        client_id=client_id,
        scopes=granted,
        lifetime=lifetime,
    )
    return IssuedToken(token, lifetime, " ".join(sorted(granted)))


# --- the registry --------------------------------------------------------------------------------------------


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
        row = await session.get(store.IdentityIssuer, issuer_id)
        if row is None:
            raise NotFound(f"no issuer {issuer_id}")
        row.status = store.ACTIVE if active else store.DISABLED
        row.updated_at = utcnow()
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
        if row is None:
            raise NotFound(f"no person {person_id}")
        row.status = store.ACTIVE if active else store.DISABLED
        row.updated_at = utcnow()
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
        row = await session.get(store.SystemClient, client_id)
        if row is None:
            raise NotFound(f"no client {client_id}")
        row.status = store.ACTIVE if active else store.DISABLED
        row.updated_at = utcnow()
    return _client_view(row)
