"""Development tokens: HS256 JWTs signed with PEERWAY_JWT_SECRET that carry the caller's role in their claims.

Only for `PEERWAY_ENV=dev` (`peerway token`, a developer's curl): anywhere else no route accepts them. Real
callers are people signed in with their organization's OpenID Connect provider and systems holding a Peerway
token (service/auth/people.py, service/auth/systems.py).
"""

from __future__ import annotations

import hashlib
import os
import secrets
import time
import warnings
from pathlib import Path
from typing import Any

import authlib.deprecate

with warnings.catch_warnings():
    # authlib announces that authlib.jose moves to joserfc before authlib 2.0; we pin authlib<2.
    warnings.simplefilter("ignore", authlib.deprecate.AuthlibDeprecationWarning)
    from authlib.jose import JoseError, jwt

from service.auth.principal import Principal, Role
from service.errors import Unauthorized
from service.settings import DEV_JWT_SECRET, Settings


def dev_secret(settings: Settings) -> str:
    """PEERWAY_JWT_SECRET, or while it is the published placeholder, this install's own random secret (kept
    in PEERWAY_DEV_SECRET_PATH, made on first use) — so no two installs accept each other's tokens."""
    configured = settings.jwt_secret.get_secret_value()
    if configured != DEV_JWT_SECRET:
        return configured
    path = Path(settings.dev_secret_path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secrets.token_urlsafe(48))
    return path.read_text().strip()


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
    token: bytes = jwt.encode({"alg": "HS256", "typ": "JWT"}, claims, dev_secret(settings))
    return token.decode()


def secret_digest(secret: str) -> str:
    """What tokens verified with `secret` are kept under (service/auth/jose.py VerifiedTokens): a new secret is a
    new digest, so a token verified before it is verified anew — and refused."""
    return hashlib.sha256(secret.encode()).hexdigest()


def verify_token(settings: Settings, token: str, secret: str | None = None) -> Principal:
    """Check signature (with `secret`: dev_secret's by default), issuer, audience and expiry; anything wrong is
    one 401 that says little."""
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
            dev_secret(settings) if secret is None else secret,
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
