"""Annotated shortcuts for routers: the session factory, the settings and the authenticated caller."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from service.app import sites
from service.app.identity import Gatekeeper
from service.app.uow import SessionFactory
from service.auth import Principal, Role, scopes
from service.errors import Forbidden, PayloadTooLarge, Unauthorized
from service.settings import Settings


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def wake_worker(request: Request) -> None:
    """Work just queued (a contact to write, a read from the EHR) is picked up now rather than at the worker's
    next poll, when this process runs the worker."""
    wake = getattr(request.app.state, "worker_wake", None)
    if wake is not None:
        wake.set()


async def get_sessions(request: Request) -> SessionFactory:
    sessions: SessionFactory = request.app.state.sessions
    return sessions


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionsDep = Annotated[SessionFactory, Depends(get_sessions)]


async def gatekeeper(request: Request) -> Gatekeeper:
    """The app's Gatekeeper (keys and caches live for the process), made on first use."""
    gate: Gatekeeper | None = getattr(request.app.state, "gatekeeper", None)
    if gate is None:
        gate = Gatekeeper(request.app.state.settings, request.app.state.sessions)
        request.app.state.gatekeeper = gate
    return gate


GatekeeperDep = Annotated[Gatekeeper, Depends(gatekeeper)]


# For the OpenAPI document only (Swagger's Authorize, client generators): the token itself is read and refused by
# `principal` below, with Peerway's own OperationOutcome answers.
BEARER = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    description="A person's access token from their organization's OpenID Connect provider (registered with"
    " `peerway issuer add`), a system's token from POST /auth/token (SMART Backend Services), or in development"
    " a `peerway token`.",
)
Documented = Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)]


async def principal(request: Request, gate: GatekeeperDep, _documented: Documented = None) -> Principal:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("a bearer token is required")
    return await gate.principal(token.strip())


def in_role(caller: Principal, roles: tuple[Role, ...]) -> Principal:
    if caller.role not in roles:
        raise Forbidden(f"this needs the role {' or '.join(r.value for r in roles)}")
    return caller


def require(*roles: Role) -> Callable[..., Awaitable[Principal]]:
    async def check(caller: Annotated[Principal, Depends(principal)]) -> Principal:
        return in_role(caller, roles)

    return check


async def caller_in_role(request: Request, *roles: Role) -> Principal:
    """`Depends(require(*roles))` for a hand-solved route (service/api/hot.py): principal, then the role."""
    return in_role(await principal(request, await gatekeeper(request)), roles)


def scope(needed: str) -> Callable[..., Awaitable[None]]:
    """A route dependency: a system's token must carry `needed` (people are not scope-limited)."""

    async def check(caller: Annotated[Principal, Depends(principal)]) -> None:
        scopes.require(caller.scopes, needed)

    return check


async def registered_site(caller: Principal, sessions: SessionFactory) -> Principal:
    """An EHR acts only for a registered, active site (its token's site claim, or its channel secret)."""
    if not await sites.is_active_site(sessions, caller.site):
        raise Forbidden(f"site {caller.site} is not registered or is disabled")
    return caller


async def ehr_sender(caller: Annotated[Principal, Depends(require(Role.EHR_SYSTEM))]) -> Principal:
    scopes.require(caller.scopes, "system/Encounter.u")
    return caller


# An EHR sending hospital events: role ehr-system with the scope system/Encounter.u. Its site is NOT checked
# here: the use case does that in the event's own transaction (one transaction per message instead of two), and
# must refuse an unregistered or disabled site (service/app/intake.py).
EhrSender = Annotated[Principal, Depends(ehr_sender)]


async def site_actor(
    caller: Annotated[Principal, Depends(require(Role.COORDINATOR, Role.EHR_SYSTEM))], sessions: SessionsDep
) -> Principal:
    """A site's coordinator, or its EHR — which acts only while its site is registered and active."""
    return await registered_site(caller, sessions) if caller.role is Role.EHR_SYSTEM else caller


# Consents are recorded by coordinators and also arrive from the EHR; both are honoured the same way (an EHR
# needs system/Consent.c to create, .u to replace: see the routes). The CDS consult takes the same callers.
ConsentWriter = Annotated[Principal, Depends(site_actor)]
Coordinator = Annotated[Principal, Depends(require(Role.COORDINATOR))]
Peer = Annotated[Principal, Depends(require(Role.PEER))]
# A peer organization's coordinator: its own peers and their caseloads, nothing of any site's clients.
OrgCoordinator = Annotated[Principal, Depends(require(Role.ORGANIZATION_COORDINATOR))]
Administrator = Annotated[Principal, Depends(require(Role.ADMINISTRATOR))]


CHANNEL_SECRET = APIKeyHeader(
    name="X-Peerway-Channel",  # the default of PEERWAY_SUBSCRIPTION_HEADER; the setting may rename it
    auto_error=False,
    scheme_name="channelSecret",
    description="The site's subscription channel secret (Subscription.channel.header), instead of a token.",
)


async def notification_sender(
    request: Request,
    settings: SettingsDep,
    sessions: SessionsDep,
    _documented: Annotated[str | None, Security(CHANNEL_SECRET)] = None,
    _or_token: Documented = None,
) -> Principal:
    """A subscription notification: the channel's secret header (Subscription.channel.header), or else an
    ehr-system bearer token. The secret says which site sent it: each site has its own (`peerway site add`),
    and PEERWAY_SUBSCRIPTION_SECRET, when set, belongs to PEERWAY_SUBSCRIPTION_SITE. Nothing in the payload
    chooses the site. A wrong header is a 401 even when a token is also sent."""
    given = request.headers.get(settings.subscription_header)
    if given is not None:
        legacy = settings.subscription_secret
        if legacy is not None and hmac.compare_digest(given.strip().encode(), legacy.get_secret_value().encode()):
            caller = Principal(subject="subscription-channel", role=Role.EHR_SYSTEM, site=settings.subscription_site)
            return await registered_site(caller, sessions)
        site = await sites.site_of_secret(sessions, given) if given.strip() else None
        if site is not None:
            return Principal(subject="subscription-channel", role=Role.EHR_SYSTEM, site=site)
        raise Unauthorized("the channel header does not match")
    caller = await principal(request, await gatekeeper(request))
    if caller.role is not Role.EHR_SYSTEM:
        raise Forbidden("this needs the role ehr-system")
    scopes.require(caller.scopes, "system/Encounter.u")
    return await registered_site(caller, sessions)


NotificationSender = Annotated[Principal, Depends(notification_sender)]


async def read_body(request: Request, settings: Settings, limit: int | None = None) -> bytes:
    """The request body, refused with 413 past the configured size, or `limit` when smaller (checked while
    reading)."""
    largest = min(settings.max_body_bytes, limit) if limit is not None else settings.max_body_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > largest:
        raise PayloadTooLarge(f"the body is larger than {largest} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > largest:
            raise PayloadTooLarge(f"the body is larger than {largest} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
