"""Key pairs for SMART Backend Services tests: written as PEM or JWKS files, the way an operator configures them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from joserfc.jwk import ECKey, KeyParameters, RSAKey

KeyKind = Literal["RSA", "EC"]


def generate(kind: KeyKind, kid: str | None = None) -> RSAKey | ECKey:
    parameters: KeyParameters | None = {"kid": kid} if kid else None
    if kind == "RSA":
        return RSAKey.generate_key(2048, parameters=parameters)
    return ECKey.generate_key("P-384", parameters=parameters)


def write_key(directory: Path, key: RSAKey | ECKey, file_format: Literal["pem", "jwks"]) -> Path:
    """The private key as a PEM file or as a private JWKS file."""
    if file_format == "pem":
        path = directory / "peerway-key.pem"
        path.write_bytes(key.as_pem(private=True))
    else:
        path = directory / "peerway-key.jwks.json"
        path.write_text(json.dumps({"keys": [key.as_dict(private=True)]}))
    return path


def public_jwks(key: RSAKey | ECKey, kid: str) -> dict[str, Any]:
    return {"keys": [key.as_dict(private=False) | {"kid": kid}]}
