"""Annotated shortcuts for routers: the session factory, the settings and the authenticated caller."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request

from service.auth import Principal, Role, verify_token
from service.errors import Forbidden, PayloadTooLarge, Unauthorized
from service.settings import Settings
from service.store.db import SessionFactory


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_sessions(request: Request) -> SessionFactory:
    sessions: SessionFactory = request.app.state.sessions
    return sessions


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionsDep = Annotated[SessionFactory, Depends(get_sessions)]


def principal(request: Request, settings: SettingsDep) -> Principal:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("a bearer token is required")
    return verify_token(settings, token.strip())


def require(*roles: Role) -> Callable[..., Principal]:
    def check(caller: Annotated[Principal, Depends(principal)]) -> Principal:
        if caller.role not in roles:
            raise Forbidden(f"this needs the role {' or '.join(r.value for r in roles)}")
        return caller

    return check


EhrSystem = Annotated[Principal, Depends(require(Role.EHR_SYSTEM))]
Coordinator = Annotated[Principal, Depends(require(Role.COORDINATOR))]
Peer = Annotated[Principal, Depends(require(Role.PEER))]
# Consents are recorded by coordinators and also arrive from the EHR; both are honoured the same way.
ConsentWriter = Annotated[Principal, Depends(require(Role.COORDINATOR, Role.EHR_SYSTEM))]


def notification_sender(request: Request, settings: SettingsDep) -> Principal:
    """A subscription notification: the channel's secret header (Subscription.channel.header), or else an
    ehr-system bearer token. A wrong header is a 401 even when a token is also sent."""
    given = request.headers.get(settings.subscription_header)
    secret = settings.subscription_secret
    if given is not None and secret is not None:
        if hmac.compare_digest(given.strip().encode(), secret.get_secret_value().encode()):
            return Principal(subject="subscription-channel", role=Role.EHR_SYSTEM, site=settings.subscription_site)
        raise Unauthorized("the channel header does not match")
    caller = principal(request, settings)
    if caller.role is not Role.EHR_SYSTEM:
        raise Forbidden("this needs the role ehr-system")
    return caller


NotificationSender = Annotated[Principal, Depends(notification_sender)]


async def read_body(request: Request, settings: Settings) -> bytes:
    """The request body, refused with 413 past the configured size (checked while reading)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > settings.max_body_bytes:
        raise PayloadTooLarge(f"the body is larger than {settings.max_body_bytes} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > settings.max_body_bytes:
            raise PayloadTooLarge(f"the body is larger than {settings.max_body_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
