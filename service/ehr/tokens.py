"""Where a site's bearer token comes from: SMART Backend Services (smart.py), a static token, or none.

One provider per site, shared by every request to its EHR; the client asks it for a fresh token once when the
EHR answers 401 (service/ehr/client.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from service.ehr.connection import SiteConnection
from service.ehr.smart import SigningKeyError, SmartBackendTokens, load_signing_key


class TokenProvider(Protocol):
    """Where the client's bearer token comes from."""

    async def token(self) -> str | None:
        """A token to send now (cached; renewed ahead of its expiry), or None for no Authorization."""
        ...

    async def refresh(self, rejected: str | None) -> str | None:
        """The EHR answered 401 to `rejected`: a new token, or None when there is no other to try."""
        ...

    async def aclose(self) -> None: ...


class StaticToken:
    """A fixed bearer token (PEERWAY_EHR_BEARER_TOKEN, or a site's token file), or none at all. A 401 cannot be
    cured by refreshing."""

    def __init__(self, value: str | None) -> None:
        self._value = value

    async def token(self) -> str | None:
        return self._value

    async def refresh(self, rejected: str | None) -> str | None:
        return None

    async def aclose(self) -> None:
        return None


def site_tokens(connection: SiteConnection) -> TokenProvider:
    """A site's token provider: SMART Backend Services when the site has a token URL, else the static bearer token
    kept in its bearer_token_path file, else its bearer_token (PEERWAY_EHR_BEARER_TOKEN), else none.

    Raises SigningKeyError when the site's key or token file cannot be used."""
    if connection.token_url:
        if not (connection.client_id and connection.private_key_path):
            raise SigningKeyError(f"site {connection.site}: a SMART token URL needs a client id and a private key")
        return SmartBackendTokens(
            connection.token_url,
            connection.client_id,
            load_signing_key(Path(connection.private_key_path), connection.key_id),
            connection.scope,
            refresh_margin=connection.token_refresh_margin_seconds,
            timeout=connection.timeout_seconds,
        )
    if connection.bearer_token_path:
        try:
            value = Path(connection.bearer_token_path).read_text().strip()
        except OSError as exc:
            raise SigningKeyError(
                f"site {connection.site}: cannot read its bearer token file: {exc.strerror}"
            ) from None
        return StaticToken(value or None)
    return StaticToken(connection.bearer_token)
