"""The web app's sign-in and sessions: who is behind a browser, kept server-side under an opaque cookie id.

A person signs in with their organization's OpenID Connect provider (code + PKCE); the access token it returns
is checked by the same Gatekeeper as an API bearer token, so a person the API would refuse cannot sign in.
In development (PEERWAY_ENV=dev, on a loopback address, or with PEERWAY_WEB_DEV_SIGNIN) a person may instead pick
a registered coordinator or peer supporter. Every request checks again that the person, issuer or peer is still
enabled: disabling one ends their web sessions. A session ends after web_idle_minutes unused, and in any case
web_session_hours after sign-in.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from service.app.clock import utcnow
from service.app.identity import Gatekeeper
from service.auth import web_signin
from service.auth.jose import unverified_parts
from service.auth.principal import Principal, Role
from service.errors import Forbidden, NotFound, Unauthorized
from service.settings import Settings
from service.store import identity as people_store
from service.store import repository
from service.store import sites as site_store
from service.store.db import SessionFactory, transaction
from service.store.models import PeerSupporter
from service.store.web import WebSession, forget_expired

SIGN_IN_MINUTES = 10  # an unfinished sign-in (or an anonymous visit's CSRF token) lasts this long
TOUCH_SECONDS = 60  # a session's idle deadline moves on at most once a minute (not one write per request)


@dataclass(frozen=True)
class WebUser:
    """A browser's session: its CSRF token and, once signed in, who it is."""

    csrf: str
    principal: Principal | None
    name: str
    dev: bool


@dataclass(frozen=True)
class DevChoice:
    key: str  # "site:<id>", "peer:<id>" or "person:<id>"
    label: str
    role: Role


@dataclass(frozen=True)
class IssuerChoice:
    id: str
    label: str


def _hash(cookie: str) -> str:
    return hashlib.sha256(cookie.encode()).hexdigest()


def redirect_uri(settings: Settings) -> str:
    return f"{settings.base_url}/signin/callback"


async def _new_row(sessions: SessionFactory, minutes: float, **fields: object) -> str:
    cookie = secrets.token_urlsafe(32)
    now = utcnow()
    async with transaction(sessions) as session:
        await forget_expired(session, now)
        session.add(
            WebSession(
                id_hash=_hash(cookie),
                csrf=secrets.token_urlsafe(32),
                created_at=now,
                expires_at=now + timedelta(minutes=minutes),
                **fields,
            )
        )
    return cookie


async def anonymous(sessions: SessionFactory) -> str:
    """A session for a browser that has not signed in yet: it carries the CSRF token of the sign-in forms."""
    return await _new_row(sessions, SIGN_IN_MINUTES, dev=False)


async def current(sessions: SessionFactory, settings: Settings, cookie: str | None) -> WebUser | None:
    """The browser's session, or None when it has none, it expired, or whoever it names may no longer sign in."""
    if not cookie or len(cookie) > 100:
        return None
    async with sessions() as session:
        row = await session.get(WebSession, _hash(cookie))
        if row is None or row.expires_at <= utcnow():
            return None
        if row.role is None or row.subject is None:
            return WebUser(row.csrf, None, "", dev=False)
        if row.dev and not settings.dev_sign_in:
            return None
        if row.person_id is not None:
            person = await session.get(people_store.Person, row.person_id)
            issuer = await session.get(people_store.IdentityIssuer, person.issuer_id) if person else None
            if person is None or person.status != people_store.ACTIVE or issuer is None or issuer.status != "active":
                return None
        role = Role(row.role)
        if role is Role.PEER:
            peer = await session.get(PeerSupporter, row.subject)
            if peer is None or peer.status == "inactive":
                return None
        principal = Principal(
            subject=row.subject, role=role, site=row.site or "", organization=row.organization, person_id=row.person_id
        )
        user = WebUser(row.csrf, principal, row.display_name or "", dev=row.dev)
        idle_deadline = _deadline(settings, row.created_at, utcnow())
    if abs(idle_deadline - row.expires_at) > timedelta(seconds=TOUCH_SECONDS):  # on with use; shorter settings now
        async with transaction(sessions) as session:
            touched = await session.get(WebSession, _hash(cookie))
            if touched is not None:
                touched.expires_at = idle_deadline
    return user


def _deadline(settings: Settings, created_at: datetime, now: datetime) -> datetime:
    """When a signed-in session used now ends: web_idle_minutes from now, never past web_session_hours."""
    return min(
        created_at + timedelta(hours=settings.web_session_hours), now + timedelta(minutes=settings.web_idle_minutes)
    )


async def end(sessions: SessionFactory, cookie: str | None) -> None:
    """Log out: the session row goes, so the cookie opens nothing even if it was copied."""
    if not cookie:
        return
    async with transaction(sessions) as session:
        row = await session.get(WebSession, _hash(cookie))
        if row is not None:
            await session.delete(row)


async def abandon_sign_in(sessions: SessionFactory, cookie: str | None) -> None:
    """The provider answered with an error: end this browser's sign-in under way, and nothing else (a link to
    the callback must not sign anybody out)."""
    if not cookie:
        return
    async with transaction(sessions) as session:
        row = await session.get(WebSession, _hash(cookie))
        if row is not None and row.role is None and row.pending_state is not None:
            await session.delete(row)


async def _signed_in(
    sessions: SessionFactory, settings: Settings, old_cookie: str | None, who: Principal, name: str, *, dev: bool
) -> str:
    """A new session id for the signed-in person (never the one used before sign-in: no session fixation)."""
    await end(sessions, old_cookie)
    return await _new_row(
        sessions,
        min(settings.web_session_hours * 60, settings.web_idle_minutes),
        role=who.role.value,
        subject=who.subject,
        site=who.site or None,
        organization=who.organization,
        person_id=who.person_id,
        display_name=name[:200],
        dev=dev,
    )


# --- development sign-in -------------------------------------------------------------------------------------


async def dev_choices(sessions: SessionFactory, settings: Settings) -> list[DevChoice]:
    """Whom a developer may sign in as: each active site's coordinator, each registered coordinator, each
    active peer supporter. Empty unless the development sign-in is on (Settings.dev_sign_in)."""
    if not settings.dev_sign_in:
        return []
    async with sessions() as session:
        sites = [s for s in await site_store.sites(session) if s.status == "active"]
        persons = [p for p in await people_store.people(session) if p.status == people_store.ACTIVE]
        peers = [p for p in await repository.peers(session) if p.status != "inactive"]
    choices = [DevChoice(f"site:{s.id}", s.name, Role.COORDINATOR) for s in sites]
    choices += [DevChoice(f"person:{p.id}", p.name, Role.COORDINATOR) for p in persons if p.role == "coordinator"]
    choices += [DevChoice(f"peer:{p.id}", p.name, Role.PEER) for p in peers]
    return choices


async def dev_sign_in(sessions: SessionFactory, settings: Settings, old_cookie: str | None, key: str) -> str:
    """Sign in as one of dev_choices (development only: anywhere else this is refused)."""
    if not settings.dev_sign_in:
        raise Forbidden("the development sign-in exists only with PEERWAY_ENV=dev on a loopback address")
    kind, _, ident = key.partition(":")
    async with sessions() as session:
        if kind == "site":
            site = await site_store.site(session, ident)
            if site is None or site.status != "active":
                raise NotFound("no such site", "who")
            who, name = Principal(subject=f"dev-coordinator-{ident}", role=Role.COORDINATOR, site=ident), site.name
        elif kind == "person":
            person = await session.get(people_store.Person, ident)
            if person is None or person.role != "coordinator" or person.status != people_store.ACTIVE:
                raise NotFound("no such coordinator", "who")
            who = Principal(subject=person.id, role=Role.COORDINATOR, site=person.site or "", person_id=person.id)
            name = person.name
        elif kind == "peer":
            peer = await session.get(PeerSupporter, ident)
            if peer is None or peer.status == "inactive":
                raise NotFound("no such peer supporter", "who")
            who = Principal(subject=peer.id, role=Role.PEER, site="", organization=peer.organization_id)
            name = peer.name
        else:
            raise NotFound("choose whom to sign in as", "who")
    return await _signed_in(sessions, settings, old_cookie, who, name, dev=True)


# --- OpenID Connect sign-in ----------------------------------------------------------------------------------


async def issuer_choices(sessions: SessionFactory) -> list[IssuerChoice]:
    """The organizations' providers a person may sign in with (the active registered issuers)."""
    async with sessions() as session:
        rows = await people_store.issuers(session)
    return [IssuerChoice(r.id, r.id) for r in rows if r.status == people_store.ACTIVE]


async def begin_sign_in(gate: Gatekeeper, old_cookie: str | None, issuer_id: str) -> tuple[str, str]:
    """A new pending session and the provider's authorization URL (state, nonce, PKCE S256) to send the
    browser to."""
    async with gate.sessions() as session:
        issuer = await session.get(people_store.IdentityIssuer, issuer_id)
    if issuer is None or issuer.status != people_store.ACTIVE:
        raise NotFound("no such sign-in provider", "issuer")
    provider = await web_signin.discover(issuer.issuer, None)
    pending = web_signin.new_pending()
    await end(gate.sessions, old_cookie)
    cookie = await _new_row(
        gate.sessions,
        SIGN_IN_MINUTES,
        dev=False,
        pending_issuer=issuer.id,
        pending_state=pending.state,
        pending_nonce=pending.nonce,
        pending_verifier=pending.code_verifier,
    )
    url = web_signin.authorization_url(provider, gate.settings.web_client_id, redirect_uri(gate.settings), pending)
    return cookie, url


async def finish_sign_in(
    gate: Gatekeeper, cookie: str | None, state: str, code: str, returned_issuer: str | None
) -> tuple[str, Principal]:
    """The provider sent the browser back: check state (and iss, RFC 9207), exchange the code with the PKCE
    verifier, check the ID token's nonce, then resolve the access token as the API would."""
    if not cookie:
        raise Unauthorized("the sign-in was not started from this browser")
    async with gate.sessions() as session:
        row = await session.get(WebSession, _hash(cookie))
        issuer = (
            await session.get(people_store.IdentityIssuer, row.pending_issuer) if row and row.pending_issuer else None
        )
    if row is None or issuer is None or row.expires_at <= utcnow() or not row.pending_state:
        raise Unauthorized("the sign-in was not started from this browser, or took too long")
    if not secrets.compare_digest(row.pending_state, state):
        raise Unauthorized("the sign-in answer does not match this browser's request (state)")
    if returned_issuer is not None and returned_issuer != issuer.issuer:
        raise Unauthorized("the sign-in answer came from another provider (iss)")
    pending = web_signin.Pending(row.pending_state, row.pending_nonce or "", row.pending_verifier or "")
    await end(gate.sessions, cookie)  # a state is good for one answer only
    provider = await web_signin.discover(issuer.issuer, None)
    secret = gate.settings.web_client_secret.get_secret_value() if gate.settings.web_client_secret else None
    tokens = await web_signin.exchange_code(
        provider, gate.settings.web_client_id, secret, redirect_uri(gate.settings), code, pending
    )
    id_token = tokens.get("id_token")
    header, _ = unverified_parts(id_token) if isinstance(id_token, str) else ({}, {})
    kid = header.get("kid") if isinstance(header.get("kid"), str) else None
    keys = await gate.issuer_keys.keys(issuer.issuer, kid)
    subject = web_signin.check_id_token(id_token, keys, issuer.issuer, gate.settings.web_client_id, pending.nonce)
    access_token = str(tokens["access_token"])
    who = await gate.principal(access_token)
    if not web_signin.same_person(access_token, issuer.issuer, subject):
        raise Unauthorized("the provider's tokens name different people")
    if who.role not in (Role.COORDINATOR, Role.PEER):
        raise Forbidden("the web app is for coordinators and peer supporters")
    async with gate.sessions() as session:
        person = await session.get(people_store.Person, who.person_id) if who.person_id else None
    new_cookie = await _signed_in(gate.sessions, gate.settings, None, who, person.name if person else "", dev=False)
    return new_cookie, who
