"""Run the Node test IdP (``tests/idp/server.mjs``) from Python tests.

The test IdP is one process serving several OpenID Connect issuers (panva's certified ``oidc-provider``), each
under its own path of one port of 127.0.0.1 with its own signing keys, clients and accounts: authorization code
flow with PKCE, access tokens as JWTs whose ``aud`` is Peerway's audience, and test-control endpoints under
``/__admin`` (key rotation, tokens minted with chosen claims and header). See ``tests/idp/README.md``. Install its
dependencies once with ``npm ci --prefix tests/idp``.

Usage::

    config = {
        "hospital": {
            "clients": [{"client_id": "peerway", "redirect_uris": ["http://peerway.test/auth/callback"]}],
            "accounts": [{"sub": "coord-1", "name": "Casey Coordinator", "email": "casey@hospital.test"}],
        },
    }
    with run_test_idp(config) as idp:
        tokens = idp.authorize_with_pkce("hospital", "peerway", "http://peerway.test/auth/callback", "coord-1")
        tokens["access_token"]  # a JWT: iss = idp.issuer("hospital"), aud = "peerway", sub = "coord-1"
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import subprocess
from collections import deque
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

import httpx

from tests.support.node import NodeHarness, raise_for_status, run_node

REPO_ROOT = Path(__file__).resolve().parents[2]
IDP_DIR = REPO_ROOT / "tests" / "idp"
SERVER_SCRIPT = IDP_DIR / "server.mjs"
INSTALL_HINT = "run: npm ci --prefix tests/idp"

HTTP_TIMEOUT_S = 30.0
MAX_REDIRECTS = 10


class TestIdpError(RuntimeError):
    """The test IdP could not be started, an admin call failed, or a flow did not end as expected."""

    __test__ = False


@dataclass(frozen=True)
class AuthorizationResponse:
    """Where the IdP finally redirected the browser (the client's redirect URI), and its query parameters."""

    __test__ = False

    location: str
    params: dict[str, str]

    @property
    def code(self) -> str | None:
        return self.params.get("code")

    @property
    def error(self) -> str | None:
        return self.params.get("error")


def pkce_pair() -> tuple[str, str]:
    """A fresh ``(code_verifier, code_challenge)`` with the S256 method (RFC 7636)."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).rstrip(b"=").decode()
    return verifier, challenge


HARNESS = NodeHarness("test IdP", SERVER_SCRIPT, INSTALL_HINT, TestIdpError)


class TestIdp:
    """A running test IdP. Get one from :func:`run_test_idp`."""

    __test__ = False  # a helper, not a pytest test class

    def __init__(
        self, root_url: str, issuers: dict[str, str], process: subprocess.Popen[str], stderr_tail: deque[str]
    ) -> None:
        self.root_url: str = root_url
        """e.g. ``http://127.0.0.1:40123``; each issuer is ``<root_url>/<name>``."""
        self.issuers: dict[str, str] = issuers
        self.process = process
        self._stderr_tail = stderr_tail
        self._client = httpx.Client(base_url=root_url, timeout=HTTP_TIMEOUT_S, trust_env=False)
        self._discovery: dict[str, dict[str, Any]] = {}

    # ----- the issuers as any client sees them -----

    def issuer(self, name: str) -> str:
        """The issuer identifier of ``name``, e.g. ``http://127.0.0.1:40123/hospital``."""
        try:
            return self.issuers[name]
        except KeyError:
            raise TestIdpError(f"test IdP: no issuer {name!r} (issuers: {', '.join(self.issuers)})") from None

    def discovery(self, name: str) -> dict[str, Any]:
        """The issuer's ``/.well-known/openid-configuration`` (fetched once; endpoints do not change)."""
        if name not in self._discovery:
            response = self._client.get(f"{self.issuer(name)}/.well-known/openid-configuration")
            raise_for_status(response, HARNESS)
            self._discovery[name] = cast(dict[str, Any], response.json())
        return self._discovery[name]

    def jwks(self, name: str) -> dict[str, Any]:
        """The issuer's public JWKS, as served at its ``jwks_uri`` now."""
        response = self._client.get(self.discovery(name)["jwks_uri"])
        raise_for_status(response, HARNESS)
        return cast(dict[str, Any], response.json())

    def login(self, authorization_url: str, account_sub: str | None = None) -> AuthorizationResponse:
        """Play the browser at the IdP: open ``authorization_url`` (an authorization request built by anyone, e.g.
        by Peerway's login endpoint), sign in as ``account_sub`` (else the request's ``login_hint``), consent, and
        return where the IdP sends the browser back: the client's redirect URI with ``code`` or ``error``.

        Each call is a new browser (no cookies from earlier logins).
        """
        with httpx.Client(timeout=HTTP_TIMEOUT_S, trust_env=False) as browser:
            url = httpx.URL(authorization_url)
            for _ in range(MAX_REDIRECTS):
                if account_sub is not None and "/interaction/" in url.path:
                    url = url.copy_merge_params({"account": account_sub})
                response = browser.get(url)
                if not response.is_redirect:
                    raise TestIdpError(
                        f"test IdP: GET {url} -> {response.status_code} instead of a redirect: {response.text[:2000]}"
                    )
                url = url.join(response.headers["location"])
                if not str(url).startswith(f"{self.root_url}/"):
                    query = parse_qs(urlsplit(str(url)).query)
                    return AuthorizationResponse(str(url), {key: values[0] for key, values in query.items()})
        raise TestIdpError(f"test IdP: more than {MAX_REDIRECTS} redirects from {authorization_url}")

    def authorize_with_pkce(
        self,
        issuer_name: str,
        client_id: str,
        redirect_uri: str,
        account_sub: str,
        scope: str = "openid profile",
        resource: str | None = None,
        *,
        extra_params: Mapping[str, str] | None = None,
        client_secret: str | None = None,
    ) -> dict[str, Any]:
        """The whole authorization code flow with PKCE (S256), over HTTP: authorization request, login of
        ``account_sub`` and consent, then the code exchanged at the token endpoint, by a public client (the default)
        or, with ``client_secret``, by a confidential one (``client_secret_basic``).

        Returns the token response: ``access_token`` (a JWT for ``resource``, else for the issuer's configured
        audience), ``id_token`` (when ``scope`` has ``openid``), ``expires_in``, ``token_type``, ``scope`` and
        ``refresh_token`` (when ``scope`` has ``offline_access`` and the client may refresh). ``resource`` must be
        an absolute URI the issuer knows (RFC 8707). ``extra_params`` go into the authorization request.
        """
        discovery = self.discovery(issuer_name)
        verifier, challenge = pkce_pair()
        state = secrets.token_urlsafe(16)
        params: dict[str, str] = {
            "client_id": client_id,
            "redirect_uri": redirect_uri,
            "response_type": "code",
            "scope": scope,
            "state": state,
            "nonce": secrets.token_urlsafe(16),
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "login_hint": account_sub,
        }
        if "offline_access" in scope.split():
            params["prompt"] = "consent"  # OpenID Connect drops offline_access without it
        if resource is not None:
            params["resource"] = resource
        params.update(extra_params or {})
        url = httpx.URL(discovery["authorization_endpoint"], params=params)
        answer = self.login(str(url), account_sub)
        if answer.code is None:
            raise TestIdpError(f"test IdP: the authorization request was refused: {answer.params}")
        if answer.params.get("state") != state:
            raise TestIdpError(f"test IdP: state mismatch in {answer.location}")
        if answer.params.get("iss") != self.issuer(issuer_name):
            raise TestIdpError(f"test IdP: iss mismatch in {answer.location}")
        form = {
            "grant_type": "authorization_code",
            "code": answer.code,
            "redirect_uri": redirect_uri,
            "client_id": client_id,
            "code_verifier": verifier,
        }
        if resource is not None:
            form["resource"] = resource
        return self._token_request(issuer_name, form, client_secret)

    def refresh(
        self,
        issuer_name: str,
        client_id: str,
        refresh_token: str,
        resource: str | None = None,
        *,
        client_secret: str | None = None,
    ) -> dict[str, Any]:
        """Exchange a refresh token for new tokens (a public client, or a confidential one with ``client_secret``)."""
        form = {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": client_id}
        if resource is not None:
            form["resource"] = resource
        return self._token_request(issuer_name, form, client_secret)

    def _token_request(self, issuer_name: str, form: dict[str, str], client_secret: str | None) -> dict[str, Any]:
        url = self.discovery(issuer_name)["token_endpoint"]
        if client_secret is None:
            response = self._client.post(url, data=form)
        else:
            client_id = form.pop("client_id")  # in the Authorization header instead
            response = self._client.post(url, data=form, auth=httpx.BasicAuth(client_id, client_secret))
        raise_for_status(response, HARNESS)
        return cast(dict[str, Any], response.json())

    # ----- test control (/__admin) -----

    def state(self, issuer_name: str) -> dict[str, Any]:
        """``{"issuer", "alg", "audience", "resource", "access_token_ttl", "id_token_ttl", "kid", "kids", "clients",
        "accounts"}``; ``kid`` is the current signing key, ``kids`` every key in the JWKS, newest first."""
        return cast(dict[str, Any], self._admin("GET", f"/__admin/issuers/{self._name(issuer_name)}"))

    def rotate_keys(self, issuer_name: str, keep_old: bool = True, alg: str | None = None) -> str:
        """Give the issuer a new signing key (a new ``kid``) and return its ``kid``. With ``keep_old`` the previous
        keys stay in the JWKS, so tokens already issued still verify; without, they are dropped. ``alg`` switches
        the signing algorithm (RS256, PS256, ES256...) from now on."""
        body: dict[str, Any] = {"keep_old": keep_old}
        if alg is not None:
            body["alg"] = alg
        state = self._admin("POST", f"/__admin/issuers/{self._name(issuer_name)}/rotate", body)
        return str(cast(dict[str, Any], state)["kid"])

    def mint(
        self,
        issuer_name: str,
        claims: dict[str, Any],
        header: dict[str, Any] | None = None,
        *,
        key: str = "current",
        defaults: bool = True,
        embed_jwk: bool = False,
        secret: str | None = None,
    ) -> str:
        """A token signed by the harness exactly as asked (for attack tests), not issued by oidc-provider.

        With ``defaults`` the claims start from those of an access token of the issuer (``iss``, ``aud`` = its
        audience, ``iat`` = now, ``exp`` = now + the access token lifetime, ``jti``) and the header from
        ``{"alg": <issuer's alg>, "typ": "at+jwt", "kid": <signing key's kid>}``; ``claims`` and ``header`` override
        them and a ``None`` value removes one. ``key``: ``"current"`` (the issuer's signing key), a ``kid`` of a key
        still in its JWKS, or ``"foreign"`` (a key of the right type that is in no JWKS). ``header={"alg": "none"}``
        gives an unsigned token; ``HS256`` is keyed with ``secret``, by default the signing key's public PEM (the
        algorithm-confusion attack). ``embed_jwk`` puts the signing key's public JWK into the header.
        """
        body: dict[str, Any] = {"claims": claims, "header": header or {}, "key": key, "defaults": defaults}
        if embed_jwk:
            body["embed_jwk"] = True
        if secret is not None:
            body["secret"] = secret
        minted = self._admin("POST", f"/__admin/issuers/{self._name(issuer_name)}/mint", body)
        return str(cast(dict[str, Any], minted)["token"])

    def settings(
        self,
        issuer_name: str,
        *,
        access_token_ttl: int | None = None,
        id_token_ttl: int | None = None,
        audience: str | None = None,
    ) -> dict[str, Any]:
        """Change the lifetimes (seconds) or the audience of the tokens the issuer issues from now on."""
        body: dict[str, Any] = {}
        if access_token_ttl is not None:
            body["access_token_ttl"] = access_token_ttl
        if id_token_ttl is not None:
            body["id_token_ttl"] = id_token_ttl
        if audience is not None:
            body["audience"] = audience
        return cast(dict[str, Any], self._admin("POST", f"/__admin/issuers/{self._name(issuer_name)}/settings", body))

    def issued_tokens(self, issuer_name: str) -> list[dict[str, Any]]:
        """Access tokens the issuer issued since the last reset, oldest first: ``{"jti", "sub", "client_id", "aud",
        "scope", "iat", "exp", "gty"}`` (tokens made by :meth:`mint` are not in it)."""
        return cast(list[dict[str, Any]], self._admin("GET", f"/__admin/issuers/{self._name(issuer_name)}/tokens"))

    def private_jwks(self, issuer_name: str) -> dict[str, Any]:
        """The issuer's keys with their private parts, newest first, to sign tokens in the test itself."""
        return cast(dict[str, Any], self._admin("GET", f"/__admin/issuers/{self._name(issuer_name)}/keys"))

    def reset(self) -> None:
        """Every issuer back to its start: its first key, configured lifetimes and audience; no sessions, grants or
        tokens."""
        self._admin("POST", "/__admin/reset")

    def server_log(self) -> str:
        """The last lines the server wrote to stderr."""
        return "".join(self._stderr_tail)

    def close(self) -> None:
        self._client.close()

    def _name(self, issuer_name: str) -> str:
        self.issuer(issuer_name)  # raises for an unknown name
        return issuer_name

    def _admin(self, method: str, path: str, body: Any = None) -> Any:
        response = self._client.request(method, path, json=body)
        raise_for_status(response, HARNESS)
        return response.json()


@contextmanager
def run_test_idp(config: Mapping[str, Any], *, env: dict[str, str] | None = None) -> Iterator[TestIdp]:
    """Start a fresh test IdP on a free port of 127.0.0.1 and stop it on exit.

    ``config`` (``IDP_CONFIG``): ``{"<issuer name>": {"clients": [...], "accounts": [...], "audience"?, "alg"?,
    "access_token_ttl"?, ...}}``, see ``tests/idp/README.md``. ``env``: extra environment for the server.
    """
    if not (IDP_DIR / "node_modules" / "oidc-provider").is_dir():
        raise TestIdpError(f"test IdP: its npm dependencies are not installed; {INSTALL_HINT}")
    server_env = {"IDP_PORT": "0", "IDP_CONFIG": json.dumps(config), **(env or {})}
    with run_node(HARNESS, server_env) as started:
        try:
            root_url = str(started.first_line["root"])
            issuers = {str(name): str(url) for name, url in started.first_line["issuers"].items()}
        except (KeyError, TypeError, AttributeError) as exc:
            raise TestIdpError(f"test IdP printed an unexpected first line: {started.first_line!r}") from exc
        idp = TestIdp(root_url, issuers, started.process, started.stderr_tail)
        try:
            yield idp
        finally:
            idp.close()
