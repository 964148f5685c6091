"""SMART Backend Services: Peerway's access token for the EHR (client_credentials with a signed JWT assertion).

The assertion is signed with our private key (RS384 for RSA, ES384 for EC P-384; the key comes from a PEM file
or a JWKS file); iss = sub = our client id, aud = the token URL, exp at most 5 minutes ahead, a fresh jti each
time. authlib's client_credentials flow sends it. The token is cached and renewed ahead of its expiry (60 s, or
half its lifetime when it lives shorter than two minutes); when the EHR answers 401 the client asks once for a
new one (service/ehr/client.py). The public half of the key is what Peerway publishes at /.well-known/jwks.json.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import authlib.deprecate
import httpx
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet, RSAKey

from service.errors import UpstreamError

with warnings.catch_warnings():
    # authlib announces its move from httpx to httpx2 for authlib 2.0; we pin authlib<2.
    warnings.simplefilter("ignore", authlib.deprecate.AuthlibDeprecationWarning)
    from authlib.integrations.httpx_client import AsyncOAuth2Client, OAuthError
    from authlib.oauth2.rfc7523 import PrivateKeyJWT
    from authlib.oauth2.rfc7523.assertion import private_key_jwt_sign

log = logging.getLogger(__name__)

ASSERTION_LIFETIME_SECONDS = 240  # SMART: exp no more than five minutes in the future
DEFAULT_TOKEN_LIFETIME_SECONDS = 300  # when the token response omits expires_in


class SigningKeyError(ValueError):
    """The configured private key cannot be used for SMART Backend Services."""


@dataclass(frozen=True)
class SigningKey:
    key: RSAKey | ECKey
    kid: str
    alg: str  # RS384 | ES384

    def public_jwk(self) -> dict[str, Any]:
        public: dict[str, Any] = self.key.as_dict(private=False)
        return public | {"kid": self.kid, "alg": self.alg, "use": "sig", "key_ops": ["verify"]}


def _algorithm(key: RSAKey | ECKey) -> str:
    if isinstance(key, RSAKey):
        return "RS384"
    if key.curve_name == "P-384":
        return "ES384"
    raise SigningKeyError(f"an EC key must be on P-384 for ES384, not {key.curve_name}")


def load_signing_key(path: Path, kid: str | None = None) -> SigningKey:
    """Read a private key from a PEM file, or from a JWKS (or single JWK) JSON file.

    From a JWKS the key whose kid is `kid` is taken (the only private key when `kid` is not given). The kid
    published defaults to the key's own kid, else its RFC 7638 thumbprint.
    """
    try:
        text = path.read_text()
    except OSError as exc:
        raise SigningKeyError(f"cannot read the private key file {path}: {exc.strerror}") from None
    try:
        if text.lstrip().startswith("{"):
            data = json.loads(text)
            keys = KeySet.import_key_set(data if "keys" in data else {"keys": [data]}).keys
            private = [k for k in keys if isinstance(k, RSAKey | ECKey) and k.is_private]
            chosen = [k for k in private if kid is None or k.kid == kid]
            if len(chosen) != 1:
                raise SigningKeyError(f"{path} holds {len(chosen)} private RSA/EC keys matching kid {kid!r}, not 1")
            key: RSAKey | ECKey = chosen[0]
        else:
            key = _import_pem(text.encode())
    except (JoseError, ValueError, TypeError) as exc:
        if isinstance(exc, SigningKeyError):
            raise
        raise SigningKeyError(f"{path} is not a usable private key ({type(exc).__name__})") from None
    if not key.is_private:
        raise SigningKeyError(f"{path} holds a public key; SMART Backend Services needs the private key")
    return SigningKey(key=key, kid=kid or key.kid or key.thumbprint(), alg=_algorithm(key))


def _import_pem(pem: bytes) -> RSAKey | ECKey:
    try:
        return RSAKey.import_key(pem)
    except (JoseError, ValueError, TypeError):
        return ECKey.import_key(pem)


def public_jwks(key: SigningKey | None) -> dict[str, Any]:
    """The JWK Set the EHR registers for Peerway (public halves only)."""
    return {"keys": [key.public_jwk()] if key is not None else []}


class _FreshAssertion(PrivateKeyJWT):  # type: ignore[misc]
    """authlib's private_key_jwt, with a short exp and a new jti on every request.

    (PrivateKeyJWT signs with a one-hour exp by default, and would reuse a jti kept in a claims dict.)
    """

    def __init__(self, token_url: str, key: SigningKey) -> None:
        super().__init__(token_url, alg=key.alg)
        self._key = key

    def sign(self, auth: Any, token_endpoint: str) -> Any:
        return private_key_jwt_sign(
            self._key.key,
            client_id=auth.client_id,
            token_endpoint=token_endpoint,
            alg=self._key.alg,
            claims=None,
            header={"kid": self._key.kid, "typ": "JWT"},
            expires_in=ASSERTION_LIFETIME_SECONDS,
        )


@dataclass(frozen=True)
class _Token:
    value: str
    renew_at: float  # on our monotonic clock


class SmartBackendTokens:
    """Access tokens from the EHR's token endpoint, cached; one request for a new one at a time."""

    def __init__(
        self,
        token_url: str,
        client_id: str,
        key: SigningKey,
        scope: str | None,
        *,
        refresh_margin: float = 60.0,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._token_url = token_url
        self._margin = refresh_margin
        self._clock = clock
        self._current: _Token | None = None
        self._lock = asyncio.Lock()
        self._oauth = AsyncOAuth2Client(
            client_id=client_id,
            client_secret=key.key,
            token_endpoint_auth_method=_FreshAssertion.name,
            scope=scope,
            timeout=timeout,
            transport=transport,
        )
        self._oauth.register_client_auth_method(_FreshAssertion(token_url, key))
        self.fetched = 0  # tokens obtained so far (for tests and logs)

    async def token(self) -> str:
        current = self._current
        if current is not None and self._clock() < current.renew_at:
            return current.value
        async with self._lock:
            current = self._current
            if current is None or self._clock() >= current.renew_at:
                current = await self._fetch()
            return current.value

    async def refresh(self, rejected: str | None) -> str:
        async with self._lock:
            current = self._current
            if current is None or current.value == rejected:
                current = await self._fetch()
            return current.value  # another request already replaced the rejected token

    async def aclose(self) -> None:
        await self._oauth.aclose()

    async def _fetch(self) -> _Token:
        started = self._clock()
        try:
            answer = await self._oauth.fetch_token(self._token_url, grant_type="client_credentials")
            value = str(answer["access_token"])
            lifetime = float(answer.get("expires_in") or DEFAULT_TOKEN_LIFETIME_SECONDS)
        except OAuthError as exc:
            # Our registration or key is wrong: retrying will not help until an operator fixes it, but the
            # rows must not die for it, so this is a transient failure that the metrics and logs show.
            log.error("SMART token endpoint refused Peerway: %s", exc.error)
            raise UpstreamError(f"SMART token endpoint refused the client ({exc.error})") from None
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            raise UpstreamError(f"SMART token endpoint unavailable: {type(exc).__name__}") from None
        self.fetched += 1
        margin = min(self._margin, lifetime / 2)
        self._current = _Token(value=value, renew_at=started + lifetime - margin)
        return self._current
