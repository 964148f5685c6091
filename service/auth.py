"""Bearer JWTs (HS256, checked with authlib): who is calling and in which role."""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import authlib.deprecate

with warnings.catch_warnings():
    # authlib announces that authlib.jose moves to joserfc before authlib 2.0; we pin authlib<2.
    warnings.simplefilter("ignore", authlib.deprecate.AuthlibDeprecationWarning)
    from authlib.jose import JoseError, jwt

from service.errors import Unauthorized
from service.settings import Settings


class Role(StrEnum):
    EHR_SYSTEM = "ehr-system"
    COORDINATOR = "coordinator"  # a hospital's (site's) coordinator: that site's clients only
    ORGANIZATION_COORDINATOR = "organization-coordinator"  # a peer organization's: its own peers' caseloads only
    PEER = "peer"


@dataclass(frozen=True)
class Principal:
    subject: str  # a peer's token carries the peer supporter's id here
    role: Role
    site: str  # the hospital an ehr-system or coordinator acts for ("site" claim; "default" when absent)
    organization: str | None = None  # the peer organization of an organization-coordinator ("org" claim)


def mint_token(
    settings: Settings,
    subject: str,
    role: Role,
    *,
    site: str = "default",
    organization: str | None = None,
    ttl: int = 3600,
) -> str:
    """A signed token for local use and tests (`peerway token`)."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "sub": subject,
        "role": role.value,
        "site": site,
        "iat": now,
        "exp": now + ttl,
    }
    if organization is not None:
        claims["org"] = organization
    token: bytes = jwt.encode({"alg": "HS256", "typ": "JWT"}, claims, settings.jwt_secret.get_secret_value())
    return token.decode()


def verify_token(settings: Settings, token: str) -> Principal:
    """Check signature, issuer, audience and expiry; anything wrong is one 401 that says little."""
    options: dict[str, Any] = {
        "iss": {"essential": True, "value": settings.jwt_issuer},
        "aud": {"essential": True, "value": settings.jwt_audience},
        "sub": {"essential": True},
        "exp": {"essential": True},
        "role": {"essential": True, "values": [r.value for r in Role]},
    }
    try:
        claims = jwt.decode(
            token,
            settings.jwt_secret.get_secret_value(),
            claims_options=options,
        )
        if claims.header.get("alg") != "HS256":
            raise Unauthorized("unexpected token algorithm")
        claims.validate(now=int(time.time()), leeway=30)
    except (JoseError, ValueError) as exc:
        raise Unauthorized(f"invalid bearer token ({type(exc).__name__})") from None
    role = Role(claims["role"])
    if role is Role.ORGANIZATION_COORDINATOR:
        organization = claims.get("org")
        if not isinstance(organization, str) or not organization:
            raise Unauthorized("an organization-coordinator token needs an org claim")
        return Principal(subject=str(claims["sub"]), role=role, site="", organization=organization)
    site = claims.get("site", "default")
    if not isinstance(site, str) or not site:
        raise Unauthorized("the site claim must be a site id")
    return Principal(subject=str(claims["sub"]), role=role, site=site)
