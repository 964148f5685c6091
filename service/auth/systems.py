"""Systems' tokens: Peerway as the authorization server of SMART Backend Services (client_credentials with a
`private_key_jwt` client assertion), and the short-lived access tokens it signs.

The assertion (RFC 7523, as SMART Backend Services profiles it): signed RS384 or ES384 by a key of the client's
registered JWK Set (inline or at its URL), `iss` = `sub` = the client id, `aud` = Peerway's token URL, `exp` at
most five minutes ahead, a `jti` never seen before (the caller keeps used ones until they expire).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from service.auth.jose import (
    ASSERTION_ALGORITHMS,
    KeySet,
    audience_includes,
    check_times,
    fetch_json,
    key_set,
    kids,
    unverified_parts,
    verify,
)
from service.auth.keys import SigningKeys
from service.errors import Unauthorized

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
MAX_ASSERTION_AHEAD_SECONDS = 300


@dataclass(frozen=True)
class Assertion:
    client_id: str
    jti: str
    expires_at: float


def assertion_client(assertion: str) -> str:
    """The client id an assertion claims to come from (unverified: to find its keys)."""
    _, claims = unverified_parts(assertion)
    client = claims.get("iss")
    if not isinstance(client, str) or not client or claims.get("sub") != client:
        raise Unauthorized("the client assertion's iss and sub must both be the client id")
    return client


def check_assertion(assertion: str, keys: KeySet, *, client_id: str, token_url: str, leeway: int) -> Assertion:
    claims = verify(assertion, keys, ASSERTION_ALGORITHMS)
    if claims.get("iss") != client_id or claims.get("sub") != client_id:
        raise Unauthorized("the client assertion's iss and sub must both be the client id")
    if not audience_includes(claims, token_url):
        raise Unauthorized("the client assertion's aud must be Peerway's token URL")
    check_times(claims, leeway=leeway, max_lifetime=None)
    if float(claims["exp"]) > time.time() + MAX_ASSERTION_AHEAD_SECONDS + leeway:
        raise Unauthorized("the client assertion must expire within five minutes")
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti or len(jti) > 255:
        raise Unauthorized("the client assertion needs a jti")
    return Assertion(client_id, jti, float(claims["exp"]))


class ClientKeys:
    """Keys of systems that publish them at a URL, cached; fetched again for an unknown kid, at most once a
    minute per client."""

    def __init__(
        self,
        transport: httpx.AsyncBaseTransport | None = None,
        *,
        cache_seconds: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._transport = transport
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._held: dict[str, tuple[KeySet, float]] = {}

    async def keys(self, url: str, kid: str | None) -> KeySet:
        now = self._clock()
        held = self._held.get(url)
        if held is not None:
            keys, fetched_at = held
            fresh = now - fetched_at < self._cache_seconds
            known = kid is None or kid in kids(keys)
            if fresh and (known or now - fetched_at < 60):
                return keys
        try:
            keys = key_set(await fetch_json(url, self._transport))
        except ValueError:
            raise Unauthorized("the client's keys could not be read") from None
        self._held[url] = (keys, now)
        return keys


def registered_keys(jwks: dict[str, Any]) -> KeySet:
    try:
        return key_set(jwks)
    except ValueError:
        raise Unauthorized("the client's registered keys cannot be read") from None


def access_token(
    keys: SigningKeys, *, issuer: str, audience: str, client_id: str, scopes: frozenset[str], lifetime: int
) -> str:
    now = int(time.time())
    return keys.sign(
        {
            "iss": issuer,
            "aud": audience,
            "sub": client_id,
            "client_id": client_id,
            "scope": " ".join(sorted(scopes)),
            "iat": now,
            "exp": now + lifetime,
            "jti": secrets.token_urlsafe(16),
        }
    )


def verify_access_token(token: str, keys: SigningKeys, *, issuer: str, audience: str, leeway: int) -> dict[str, Any]:
    """A token Peerway issued: its signature, issuer, audience and times."""
    claims = keys.verify(token)
    if claims.get("iss") != issuer or not audience_includes(claims, audience):
        raise Unauthorized("the token is not one Peerway issued for itself")
    check_times(claims, leeway=leeway, max_lifetime=None)
    if not isinstance(claims.get("sub"), str) or not isinstance(claims.get("scope"), str):
        raise Unauthorized("the token names no client or scope")
    return claims
