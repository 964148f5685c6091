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

from service.app.clock import utcnow
from service.auth import jose, keys, scopes
from service.auth.dev import dev_secret, secret_digest
from service.auth.dev import verify_token as verify_dev_token
from service.auth.jose import VerifiedTokens
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
from service.errors import Forbidden, InvalidResource, Unauthorized
from service.settings import Settings
from service.store import identity as store
from service.store.db import SessionFactory, engine_of, transaction

PERSON_ROLES = frozenset({Role.ADMINISTRATOR, Role.COORDINATOR, Role.ORGANIZATION_COORDINATOR, Role.PEER})
SYSTEM_KINDS = {"ehr": Role.EHR_SYSTEM, "organization": Role.ORGANIZATION_COORDINATOR}
NUL = "\x00"
MAX_SUBJECT_CHARS = 255  # Person.subject's length; service/auth/people.py refuses longer ones


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
        # Tokens already verified (signature and claims), by their text: see service/auth/jose.py VerifiedTokens.
        self.verified = VerifiedTokens()
        # The unverified header and claims of tokens that resolved to a caller, by their text (at most as many
        # as `verified` keeps): only which way to verify a token; every check still runs on every request.
        self._parts: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
        self._dev_keys = ("", "")  # the dev secret last used, and its digest
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
        parts = self._parts.get(token)
        header, claims = parts if parts is not None else jose.unverified_parts(token)
        issuer = claims.get("iss")
        if issuer == self.issuer:
            caller = await self._system(token)
        elif header.get("alg") == "HS256":
            if self.settings.env != "dev":
                raise Unauthorized("development tokens are accepted only when PEERWAY_ENV=dev")
            caller = self._dev(token, claims)
        elif not isinstance(issuer, str):
            raise Unauthorized("the token names no issuer")
        else:
            caller = await self._person(token, issuer, claims)
        if parts is None:
            if len(self._parts) >= self.verified.size:
                del self._parts[next(iter(self._parts))]  # the oldest kept
            self._parts[token] = (header, claims)
        return caller

    def _dev(self, token: str, unverified: dict[str, Any]) -> Principal:
        """A development token's caller: everything it says is in the token, so a verified one is kept to its exp
        while the dev secret that verified it is still the one in use (the secret file is read on every request:
        replacing it refuses the old tokens at once)."""
        secret = dev_secret(self.settings)
        if self._dev_keys[0] != secret:
            self._dev_keys = (secret, secret_digest(secret))
        keys = self._dev_keys[1]
        held = self.verified.get(token, keys)
        kept = held.get("principal") if held is not None else None
        if isinstance(kept, Principal):
            return kept
        caller = verify_dev_token(self.settings, token, secret)
        self.verified.put(token, keys, {"principal": caller, "exp": unverified.get("exp")})
        return caller

    async def _system(self, token: str) -> Principal:
        signing_keys = self.signing_keys  # a new object once the key file changed: tokens are verified anew
        claims = self.verified.get(token, signing_keys)
        if claims is None:
            claims = verify_access_token(
                token,
                signing_keys,
                issuer=self.issuer,
                audience=self.settings.base_url,
                leeway=self.settings.token_leeway_seconds,
            )
            self.verified.put(token, signing_keys, claims)
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

    async def _person(self, token: str, issuer_url: str, unverified: dict[str, Any]) -> Principal:
        # The issuer, the person and their peer record in one read, looked up under the subject the token claims:
        # nothing of the person is used unless the token then verifies (its verified sub is that subject).
        # Text a database cannot take (U+0000, a lone UTF-16 surrogate: valid JSON, not UTF-8) is never sent to it:
        # no issuer or person is registered under it.
        if not _storable(issuer_url):
            raise Unauthorized("tokens of this issuer are not accepted")
        subject = unverified.get("sub")
        if not isinstance(subject, str) or not _storable(subject) or not 0 < len(subject) <= MAX_SUBJECT_CHARS:
            subject = ""  # no one's: such a token has no person (and one that verifies is refused below)
        found = await store.caller_rows(engine_of(self.sessions), issuer_url, subject)
        if found is None or found.issuer.status != store.ACTIVE:
            raise Unauthorized("tokens of this issuer are not accepted")
        issuer = found.issuer
        policy = TokenPolicy(
            audience=self.settings.auth_audience,
            leeway_seconds=self.settings.token_leeway_seconds,
            max_lifetime_seconds=self.settings.person_token_max_lifetime_seconds,
        )
        pinned = json.loads(issuer.jwks_json) if issuer.jwks_json else None
        claims = await verify_person_token(token, issuer.issuer, pinned, self.issuer_keys, policy, self.verified)
        if claims["sub"] != subject:  # a verified sub is the one read above, unless it was not a usable one
            raise Unauthorized("the token names no subject")
        person, peer = found.person, found.peer
        if person is None:
            raise Forbidden("this account is not registered in Peerway")
        if person.status != store.ACTIVE:
            raise Forbidden("this account is disabled")
        return _person_principal(person, issuer, peer)


def _storable(text: str) -> bool:
    """Whether SQLite and PostgreSQL can both take the text as a parameter (a forged token's claims can hold
    anything JSON can write)."""
    if NUL in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _person_principal(
    person: store.PersonStatus, issuer: store.IssuerStatus, peer: store.PeerStatus | None
) -> Principal:
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
    if not form.get("grant_type"):  # RFC 6749 5.2: a missing parameter is invalid_request
        raise InvalidResource("grant_type is required (client_credentials)", "form")
    if form["grant_type"] != "client_credentials":  # one we do not do: unsupported_grant_type
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
