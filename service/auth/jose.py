"""Reading and checking JWTs from outside: the unverified header and issuer (to know whose keys to use), key
sets fetched from issuers and systems, and the checks every accepted token passes. authlib does the JOSE.

What is never trusted: the `alg` a token names beyond the short list each caller allows (no `none`, no HS256
keyed with a public key), and any key a token points at or carries itself (`jku`, `x5u`, `jwk`, `x5c`): keys come
only from the issuer's discovery document, a JWKS registered in Peerway, or Peerway's own key file.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
import warnings
from collections.abc import Callable, Collection
from typing import Any

import authlib.deprecate
import httpx

with warnings.catch_warnings():
    warnings.simplefilter("ignore", authlib.deprecate.AuthlibDeprecationWarning)
    from authlib.jose import JoseError, JsonWebKey, JsonWebToken
    from authlib.jose import KeySet as KeySet  # re-exported: the one import of authlib.jose (its warnings)

from service.errors import Unauthorized

PEOPLE_ALGORITHMS = ("RS256", "PS256", "ES256")
ASSERTION_ALGORITHMS = ("RS384", "ES384")
MAX_TOKEN_BYTES = 16_384
FETCH_TIMEOUT_SECONDS = 5.0


def unverified_parts(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The header and claims of a compact JWS, not verified: only to choose how to verify it."""
    if len(token) > MAX_TOKEN_BYTES:
        raise Unauthorized("the bearer token is too long")
    parts = token.split(".")
    if len(parts) != 3:
        raise Unauthorized("the bearer token is not a JWT")
    try:
        header = json.loads(_b64(parts[0]))
        claims = json.loads(_b64(parts[1]))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise Unauthorized("the bearer token is not a JWT") from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise Unauthorized("the bearer token is not a JWT")
    return header, claims


def _b64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def key_set(jwks: object) -> KeySet:
    """Public keys from a JWK Set document (private parts, if any, are dropped)."""
    if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list):
        raise ValueError("not a JWK Set")
    keys = []
    for jwk in jwks["keys"]:
        if isinstance(jwk, dict) and jwk.get("kty") in ("RSA", "EC"):
            public = JsonWebKey.import_key(jwk).as_dict(is_private=False)
            keys.append(JsonWebKey.import_key(public))
    return KeySet(keys)


def rsa_bits(jwk: dict[str, Any]) -> int:
    """The size of an RSA public key's modulus, in bits."""
    return len(_b64(str(jwk.get("n", "")))) * 8


def kids(keys: KeySet) -> set[str]:
    return {str(k.kid) for k in keys.keys if k.kid}


def verify(token: str, keys: KeySet, algorithms: Collection[str]) -> dict[str, Any]:
    """The claims, when one of `keys` (chosen by kid) signed the token with one of `algorithms`."""
    header, _ = unverified_parts(token)
    if header.get("alg") not in algorithms:
        raise Unauthorized(f"tokens signed with {header.get('alg')!r} are not accepted")
    if header.get("kid") is None and len(keys.keys) != 1:
        raise Unauthorized("the token names no key (kid)")
    try:
        claims = JsonWebToken(list(algorithms)).decode(token, keys)
    except (JoseError, ValueError) as exc:
        raise Unauthorized(f"invalid bearer token ({type(exc).__name__})") from None
    return dict(claims)


class VerifiedTokens:
    """Claims of tokens that passed every check of their signature and claims, by the token's exact text, each
    kept until the token's exp and only while the keys that checked it are still the ones in use (`keys`: the
    issuer and its key set, Peerway's key file as loaded...). A token is verified once instead of on every
    request; whatever can change within its life besides its keys (a disabled account, issuer or client, a
    retired peer) is checked by the caller on every request, cached or not. At most `size` are kept."""

    def __init__(self, size: int = 10_000, clock: Callable[[], float] = time.time) -> None:
        self.size = size
        self.clock = clock
        self._held: dict[str, tuple[object, dict[str, Any], float]] = {}

    def get(self, token: str, keys: object) -> dict[str, Any] | None:
        held = self._held.get(token)
        if held is None:
            return None
        held_keys, claims, exp = held
        if self.clock() >= exp or (held_keys is not keys and held_keys != keys):
            del self._held[token]
            return None
        return claims

    def put(self, token: str, keys: object, claims: dict[str, Any]) -> None:
        exp = claims.get("exp")
        if not isinstance(exp, int | float) or isinstance(exp, bool):
            return
        if len(self._held) >= self.size:
            del self._held[next(iter(self._held))]  # the oldest kept
        self._held[token] = (keys, claims, float(exp))


def check_times(claims: dict[str, Any], *, leeway: int, max_lifetime: int | None, now: float | None = None) -> None:
    """exp (required), nbf and iat, with `leeway` seconds; and exp - iat at most `max_lifetime`."""
    moment = time.time() if now is None else now
    exp, nbf, iat = _seconds(claims, "exp"), _seconds(claims, "nbf"), _seconds(claims, "iat")
    if exp is None:
        raise Unauthorized("the token has no expiry")
    if moment > exp + leeway:
        raise Unauthorized("the token has expired")
    if nbf is not None and moment + leeway < nbf:
        raise Unauthorized("the token is not valid yet")
    if iat is not None and iat > moment + leeway:
        raise Unauthorized("the token was issued in the future")
    if max_lifetime is not None:
        start = iat if iat is not None else nbf
        if start is None:
            raise Unauthorized("the token says neither when it was issued nor from when it is valid")
        if exp - start > max_lifetime + leeway:
            raise Unauthorized(f"the token lives longer than {max_lifetime} seconds")


def _seconds(claims: dict[str, Any], name: str) -> float | None:
    """A NumericDate claim; a claim that is present but not a number is refused outright."""
    value = claims.get(name)
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise Unauthorized(f"the token's {name} is not a time")
    return float(value)


def audience_includes(claims: dict[str, Any], audience: str) -> bool:
    aud = claims.get("aud")
    return aud == audience or (isinstance(aud, list) and audience in aud)


async def fetch_json(url: str, transport: httpx.AsyncBaseTransport | None = None) -> dict[str, Any]:
    """A JSON object from an issuer or a system (discovery, JWKS); failures are Unauthorized (say little).

    A client per fetch: fetches are rare (a key set is cached), so no connection outlives its answer."""
    try:
        async with httpx.AsyncClient(transport=transport, trust_env=False, timeout=FETCH_TIMEOUT_SECONDS) as http:
            response = await http.get(url, follow_redirects=False)
        response.raise_for_status()
        data = response.json()
    except (httpx.HTTPError, ValueError):
        raise Unauthorized("the token's keys could not be fetched") from None
    if not isinstance(data, dict):
        raise Unauthorized("the token's keys could not be fetched")
    return data
