"""The web app's side of OpenID Connect: the authorization request (code flow with PKCE S256, state and
nonce) and the code exchange at the provider's token endpoint, with authlib's OAuth 2.0 client.

What Peerway then believes comes from the access token, checked exactly as the API checks a bearer token
(Gatekeeper.principal), so the web app and the API share one seam; the ID token is checked only for the nonce
that ties it to this browser's sign-in."""

from __future__ import annotations

import secrets
import warnings
from dataclasses import dataclass
from typing import Any

import authlib.deprecate
import httpx

from service.auth.jose import PEOPLE_ALGORITHMS, KeySet, check_times, fetch_json, unverified_parts, verify
from service.errors import Unauthorized

with warnings.catch_warnings():
    warnings.simplefilter("ignore", authlib.deprecate.AuthlibDeprecationWarning)
    from authlib.integrations.base_client.errors import OAuthError
    from authlib.integrations.httpx_client import AsyncOAuth2Client

TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class Provider:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str


@dataclass(frozen=True)
class Pending:
    """What this browser's sign-in must come back with: kept server-side, never in the URL or the browser."""

    state: str
    nonce: str
    code_verifier: str


async def discover(issuer: str, transport: httpx.AsyncBaseTransport | None = None) -> Provider:
    document = await fetch_json(issuer.rstrip("/") + "/.well-known/openid-configuration", transport)
    authorize, token = document.get("authorization_endpoint"), document.get("token_endpoint")
    if document.get("issuer") != issuer or not isinstance(authorize, str) or not isinstance(token, str):
        raise Unauthorized("the provider's discovery document does not match it")
    return Provider(issuer, authorize, token)


def new_pending() -> Pending:
    return Pending(secrets.token_urlsafe(32), secrets.token_urlsafe(32), secrets.token_urlsafe(64))


def _client(client_id: str, client_secret: str | None, redirect_uri: str) -> AsyncOAuth2Client:
    return AsyncOAuth2Client(
        client_id=client_id,
        client_secret=client_secret,
        token_endpoint_auth_method="client_secret_basic" if client_secret else "none",
        redirect_uri=redirect_uri,
        scope="openid",
        code_challenge_method="S256",
        timeout=TIMEOUT_SECONDS,
        trust_env=False,
    )


def authorization_url(provider: Provider, client_id: str, redirect_uri: str, pending: Pending) -> str:
    client = _client(client_id, None, redirect_uri)
    url, _ = client.create_authorization_url(
        provider.authorization_endpoint,
        state=pending.state,
        nonce=pending.nonce,
        code_verifier=pending.code_verifier,
        # The provider asks who it is every time: signing out of Peerway on a shared computer must not leave the
        # next person one click from the previous person's session at the provider.
        prompt="login",
    )
    return str(url)


async def exchange_code(
    provider: Provider,
    client_id: str,
    client_secret: str | None,
    redirect_uri: str,
    code: str,
    pending: Pending,
) -> dict[str, Any]:
    """The provider's token response for the code (access_token, id_token...); Unauthorized on any refusal."""
    async with _client(client_id, client_secret, redirect_uri) as client:
        try:
            token = await client.fetch_token(
                provider.token_endpoint,
                grant_type="authorization_code",
                code=code,
                code_verifier=pending.code_verifier,
            )
        except (OAuthError, httpx.HTTPError, ValueError) as exc:
            raise Unauthorized(f"the provider refused the sign-in ({type(exc).__name__})") from None
    if not isinstance(token.get("access_token"), str):
        raise Unauthorized("the provider answered no access token")
    return dict(token)


ID_TOKEN_LEEWAY_SECONDS = 60


def check_id_token(id_token: object, keys: KeySet, issuer: str, client_id: str, nonce: str) -> str:
    """The ID token was signed by the provider, for this client, in answer to this sign-in (nonce), and is
    current (exp, iat); its subject, which the access token must name too."""
    if not isinstance(id_token, str):
        raise Unauthorized("the provider answered no ID token")
    claims = verify(id_token, keys, PEOPLE_ALGORITHMS)
    audience = claims.get("aud")
    audiences = audience if isinstance(audience, list) else [audience]
    if claims.get("iss") != issuer or client_id not in audiences:
        raise Unauthorized("the ID token is not for this sign-in")
    if not secrets.compare_digest(str(claims.get("nonce", "")), nonce):
        raise Unauthorized("the ID token is not for this sign-in (nonce)")
    check_times(claims, leeway=ID_TOKEN_LEEWAY_SECONDS, max_lifetime=None)
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        raise Unauthorized("the ID token names nobody (sub)")
    return subject


def same_person(access_token: str, issuer: str, id_subject: str) -> bool:
    """The access token (already verified by the Gatekeeper) names the ID token's person at the same issuer."""
    _, claims = unverified_parts(access_token)
    return claims.get("iss") == issuer and claims.get("sub") == id_subject
