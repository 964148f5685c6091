"""People's tokens: access tokens of the OpenID Connect providers Peerway trusts (hospitals', peer
organizations'), checked as an OAuth 2.0 resource server does. Who the person is in Peerway is the registry's
business (service/app/identity.py); here only the token: signed by the issuer's key (RS256, PS256 or ES256),
for Peerway (aud), in its time (exp, nbf, iat with a small leeway) and no longer-lived than allowed.

Keys come from the issuer's discovery document (`/.well-known/openid-configuration` -> `jwks_uri`), cached, and
fetched again when a token names a key id not held: at most once per `refresh_seconds` per issuer, so a stream
of tokens with made-up kids cannot turn Peerway into a client hammering the provider. An issuer registered with
pinned keys is never fetched from.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from service.auth.jose import (
    PEOPLE_ALGORITHMS,
    KeySet,
    VerifiedTokens,
    audience_includes,
    check_times,
    fetch_json,
    key_set,
    kids,
    unverified_parts,
    verify,
)
from service.errors import Unauthorized


@dataclass
class _Held:
    keys: KeySet
    fetched_at: float
    tried_at: float


class IssuerKeys:
    """The signing keys of each trusted issuer, as its discovery document publishes them."""

    def __init__(
        self,
        transport: httpx.AsyncBaseTransport | None = None,
        *,
        cache_seconds: float = 3600.0,
        refresh_seconds: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._transport = transport
        self._cache_seconds = cache_seconds
        self._refresh_seconds = refresh_seconds
        self._clock = clock
        self._held: dict[str, _Held] = {}

    async def keys(self, issuer: str, kid: str | None) -> KeySet:
        now = self._clock()
        held = self._held.get(issuer)
        stale = held is None or now - held.fetched_at > self._cache_seconds
        unknown = held is not None and kid is not None and kid not in kids(held.keys)
        may_try = held is not None and now - held.tried_at >= self._refresh_seconds
        if stale or (unknown and may_try):
            # Only refreshes for an unknown kid count against the limit; a first or expired fetch does not.
            tried_at = now if unknown else (held.tried_at if held is not None else float("-inf"))
            if held is not None:
                held.tried_at = tried_at
            held = _Held(await self._fetch(issuer), now, tried_at)
            self._held[issuer] = held
        if held is None:
            raise Unauthorized("the token's keys could not be fetched")
        return held.keys

    async def _fetch(self, issuer: str) -> KeySet:
        discovery = await fetch_json(issuer.rstrip("/") + "/.well-known/openid-configuration", self._transport)
        if discovery.get("issuer") != issuer or not isinstance(discovery.get("jwks_uri"), str):
            raise Unauthorized("the issuer's discovery document does not match it")
        try:
            return key_set(await fetch_json(discovery["jwks_uri"], self._transport))
        except ValueError:
            raise Unauthorized("the token's keys could not be fetched") from None


@dataclass(frozen=True)
class TokenPolicy:
    audience: str
    leeway_seconds: int
    max_lifetime_seconds: int


async def verify_person_token(
    token: str,
    issuer: str,
    pinned_jwks: dict[str, Any] | None,
    cache: IssuerKeys,
    policy: TokenPolicy,
    verified: VerifiedTokens | None = None,
) -> dict[str, Any]:
    """The claims of a person's access token from `issuer`, every check passed; Unauthorized otherwise. With
    `verified`, a token already verified with the same keys (the pinned JWKS, or the key set the issuer
    publishes now) is not verified again before its exp."""
    header, _ = unverified_parts(token)
    kid = header.get("kid") if isinstance(header.get("kid"), str) else None
    keys = None if pinned_jwks is not None else await cache.keys(issuer, kid)
    identity = (issuer, policy, pinned_jwks if pinned_jwks is not None else keys)
    known = verified.get(token, identity) if verified is not None else None
    if known is not None:
        return known
    if keys is None:
        try:
            keys = key_set(pinned_jwks)
        except ValueError:
            raise Unauthorized("the issuer's registered keys cannot be read") from None
    claims = _checked(token, issuer, keys, policy)
    if verified is not None:
        verified.put(token, identity, claims)
    return claims


def _checked(token: str, issuer: str, keys: KeySet, policy: TokenPolicy) -> dict[str, Any]:
    claims = verify(token, keys, PEOPLE_ALGORITHMS)
    if claims.get("iss") != issuer:
        raise Unauthorized("the token's issuer does not match")
    if not audience_includes(claims, policy.audience):
        raise Unauthorized("the token is not meant for Peerway (aud)")
    check_times(claims, leeway=policy.leeway_seconds, max_lifetime=policy.max_lifetime_seconds)
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject or len(subject) > 255:
        raise Unauthorized("the token names no subject")
    return claims
