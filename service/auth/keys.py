"""Peerway's own signing keys, for the access tokens it issues to systems (SMART Backend Services).

Kept as a JWK Set holding private keys, in one file only the service reads (PEERWAY_AUTH_KEYS_PATH): the first
key signs, every key verifies and is published (/auth/jwks.json), so a rotation (`peerway auth rotate-key`: a new
key first, the previous one kept) never invalidates a token already issued. Created with one key when missing.
Several API processes share the file (a volume or a secret), so they sign and verify alike.
"""

from __future__ import annotations

import json
import os
import secrets
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import authlib.deprecate

with warnings.catch_warnings():
    warnings.simplefilter("ignore", authlib.deprecate.AuthlibDeprecationWarning)
    from authlib.jose import JoseError, JsonWebKey, JsonWebToken, KeySet

from service.errors import Unauthorized

SIGNING_ALGORITHM = "ES256"
KEPT_KEYS = 2  # the signing key and the one before it
_jwt = JsonWebToken([SIGNING_ALGORITHM])


class KeyFileError(ValueError):
    """The key file exists but is not a JWK Set of private keys Peerway can sign with."""


@dataclass(frozen=True)
class SigningKeys:
    """Peerway's keys: `jwks` holds private keys, the first one signs."""

    jwks: dict[str, Any]

    @property
    def current_kid(self) -> str:
        return str(self.jwks["keys"][0]["kid"])

    def sign(self, claims: dict[str, Any]) -> str:
        key = JsonWebKey.import_key(self.jwks["keys"][0])
        header = {"alg": SIGNING_ALGORITHM, "typ": "at+jwt", "kid": self.current_kid}
        token: bytes = _jwt.encode(header, claims, key)
        return token.decode()

    def verify(self, token: str) -> dict[str, Any]:
        """The claims of a token one of these keys signed (ES256 only); Unauthorized otherwise. Claims are not
        checked here (expiry, audience): the caller does that."""
        try:
            claims = _jwt.decode(token, KeySet([JsonWebKey.import_key(k) for k in self.jwks["keys"]]))
        except (JoseError, ValueError) as exc:
            raise Unauthorized(f"invalid bearer token ({type(exc).__name__})") from None
        return dict(claims)

    def public_jwks(self) -> dict[str, Any]:
        return {"keys": [JsonWebKey.import_key(k).as_dict(is_private=False) for k in self.jwks["keys"]]}


def _new_key() -> dict[str, Any]:
    key = JsonWebKey.generate_key("EC", "P-256", is_private=True)
    jwk: dict[str, Any] = key.as_dict(is_private=True)
    jwk["kid"] = f"peerway-{int(time.time())}-{secrets.token_hex(4)}"
    jwk["alg"] = SIGNING_ALGORITHM
    jwk["use"] = "sig"
    return jwk


def _write(path: Path, jwks: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(path.suffix + ".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        json.dump(jwks, handle)
    os.replace(temporary, path)


def load_or_create(path: Path) -> SigningKeys:
    """The keys in `path`; a new file with one fresh key when there is none."""
    if not path.exists():
        _write(path, {"keys": [_new_key()]})
    try:
        jwks = json.loads(path.read_text())
        keys = jwks["keys"]
        if not keys or any("d" not in k or "kid" not in k for k in keys):
            raise KeyFileError(f"{path}: every key needs its private part and a kid")
        for key in keys:
            JsonWebKey.import_key(key)
    except (OSError, ValueError, KeyError, TypeError, JoseError) as exc:
        raise KeyFileError(f"{path} is not a JWK Set of private keys ({type(exc).__name__})") from None
    return SigningKeys(jwks)


def rotate(path: Path) -> SigningKeys:
    """A new signing key first; the previous one kept for tokens it signed (older ones dropped)."""
    current = load_or_create(path)
    jwks = {"keys": [_new_key(), *current.jwks["keys"]][:KEPT_KEYS]}
    _write(path, jwks)
    return SigningKeys(jwks)
