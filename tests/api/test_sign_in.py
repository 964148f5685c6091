"""The front door, with a real OpenID provider (tests/idp: oidc-provider) and real SMART Backend Services clients.

People sign in with their organization's provider (authorization code + PKCE there); Peerway checks the access
token as a resource server and asks its own registry who the person is. Systems get a Peerway token with a
private_key_jwt assertion. Every attack an outside review would try gets a 401 or 403 and nothing else.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import authlib.deprecate
import httpx
import pytest
from fastapi import FastAPI

from service.app.peers import register_org_peer
from service.app.sites import SiteSpec, add_organization, add_site
from service.auth import Role
from service.auth.keys import rotate
from tests.conftest import fixture_json
from tests.support.flow import DISCHARGE
from tests.support.idp import TestIdp, run_test_idp

with warnings.catch_warnings():
    warnings.simplefilter("ignore", authlib.deprecate.AuthlibDeprecationWarning)
    from authlib.jose import JsonWebKey, jwt

Auth = Callable[..., dict[str, str]]
REDIRECT = "http://peerway.test/app/callback"
WEB_APP = {"client_id": "peerway-web", "redirect_uris": [REDIRECT]}
CONFIG = {
    "hospital": {
        "clients": [WEB_APP],
        "accounts": [{"sub": "casey", "name": "Casey Coordinator"}, {"sub": "dana", "name": "Dana Nurse"}],
        "audience": "peerway",
        "alg": "RS256",
    },
    "peer-org": {
        "clients": [WEB_APP],
        "accounts": [{"sub": "robin", "name": "Robin Peer"}, {"sub": "casey", "name": "Casey Elsewhere"}],
        "audience": "peerway",
        "alg": "ES256",
    },
}


@pytest.fixture(scope="module")
def _idp_server() -> Iterator[TestIdp]:
    with run_test_idp(CONFIG) as server:
        yield server


@pytest.fixture
def idp(_idp_server: TestIdp) -> TestIdp:
    _idp_server.reset()
    return _idp_server


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class World:
    """A hospital (north) that trusts its provider, a peer organization (alpha) that trusts its own, a peer."""

    def __init__(self, client: httpx.AsyncClient, auth: Auth, idp: TestIdp) -> None:
        self.client, self.auth, self.idp = client, auth, idp
        self.admin = auth(Role.ADMINISTRATOR, "root")
        self.peer_id = ""
        self.people: dict[str, str] = {}

    async def build(self, app: FastAPI) -> World:
        await add_site(app.state.sessions, "north", SiteSpec(name="North Hospital"))
        await add_organization(app.state.sessions, "alpha", "Alpha Peers")
        self.peer_id = (await register_org_peer(app.state.sessions, "alpha", "Robin", ["north"])).id
        for body in (
            {"id": "hospital", "issuer": self.idp.issuer("hospital"), "sites": ["north"]},
            {"id": "peer-org", "issuer": self.idp.issuer("peer-org"), "organizations": ["alpha"]},
        ):
            response = await self.client.post("/api/admin/issuers", json=body, headers=self.admin)
            assert response.status_code == 201, response.text
        casey = {"issuer": "hospital", "subject": "casey", "role": "coordinator", "site": "north", "name": "Casey"}
        response = await self.client.post("/api/admin/people", json=casey, headers=self.admin)
        assert response.status_code == 201, response.text
        self.people["casey"] = response.json()["id"]
        robin = {"issuer": "peer-org", "subject": "robin", "peer_id": self.peer_id, "name": "Robin"}
        org = self.auth(Role.ORGANIZATION_COORDINATOR, "lead", org="alpha")
        response = await self.client.post("/api/org/people", json=robin, headers=org)
        assert response.status_code == 201, response.text
        self.people["robin"] = response.json()["id"]
        return self

    def sign_in(self, issuer: str, account: str) -> str:
        return str(self.idp.authorize_with_pkce(issuer, "peerway-web", REDIRECT, account)["access_token"])


@pytest.fixture
async def world(app: FastAPI, client: httpx.AsyncClient, auth: Auth, idp: TestIdp) -> World:
    return await World(client, auth, idp).build(app)


# --- people ------------------------------------------------------------------------------------------------


async def test_a_coordinator_signs_in_with_the_hospitals_provider(world: World) -> None:
    token = world.sign_in("hospital", "casey")
    response = await world.client.get("/api/episodes", headers=bearer(token))
    assert response.status_code == 200, response.text
    # Casey is north's coordinator: a peer's route is not for her.
    assert (await world.client.get("/api/me/clients", headers=bearer(token))).status_code == 403


async def test_a_peer_signs_in_with_the_organizations_provider(world: World) -> None:
    token = world.sign_in("peer-org", "robin")
    response = await world.client.get("/api/me/clients", headers=bearer(token))
    assert response.status_code == 200, response.text
    assert response.json() == []


async def test_an_id_token_is_no_access_token(world: World) -> None:
    tokens = world.idp.authorize_with_pkce("hospital", "peerway-web", REDIRECT, "casey")
    response = await world.client.get("/api/episodes", headers=bearer(tokens["id_token"]))  # aud: the web app
    assert response.status_code == 401


async def test_the_providers_new_key_is_fetched_and_the_old_one_still_verifies(world: World) -> None:
    before = world.sign_in("hospital", "casey")
    assert (await world.client.get("/api/episodes", headers=bearer(before))).status_code == 200
    world.idp.rotate_keys("hospital", keep_old=True)
    after = world.sign_in("hospital", "casey")
    assert (await world.client.get("/api/episodes", headers=bearer(after))).status_code == 200
    assert (await world.client.get("/api/episodes", headers=bearer(before))).status_code == 200


def now() -> int:
    return int(time.time())


# Each: (what the attacker sends, minted by the provider's harness) -> Peerway's answer.
ATTACKS: list[tuple[str, dict[str, Any], dict[str, Any], dict[str, Any], int]] = [
    ("alg none", {}, {"alg": "none"}, {}, 401),
    ("HS256 keyed with the provider's public key", {}, {"alg": "HS256"}, {}, 401),
    ("a key the provider never published", {}, {}, {"key": "foreign"}, 401),
    ("jku pointing at the attacker's keys", {}, {"jku": "http://127.0.0.1:9/jwks.json"}, {"key": "foreign"}, 401),
    ("x5u pointing at the attacker's certificate", {}, {"x5u": "http://127.0.0.1:9/cert.pem"}, {"key": "foreign"}, 401),
    ("the attacker's key embedded in the header", {}, {}, {"key": "foreign", "embed_jwk": True}, 401),
    ("expired", {"iat": -900, "exp": -600}, {}, {}, 401),
    ("not valid yet", {"nbf": 600}, {}, {}, 401),
    ("issued in the future", {"iat": 600, "exp": 900}, {}, {}, 401),
    ("for another audience", {"aud": "someone-else"}, {}, {}, 401),
    ("living longer than the cap", {"iat": 0, "exp": 7200}, {}, {}, 401),
    ("no expiry", {"exp": None}, {}, {}, 401),
    ("an unregistered subject", {"sub": "mallory"}, {}, {}, 403),
    # PostgreSQL cannot compare text holding U+0000: such a subject must never reach a query (a 500 once)
    ("a subject holding U+0000, signed by the provider", {"sub": "ca\x00sey"}, {}, {}, 401),
    ("a subject holding U+0000, forged", {"sub": "ca\x00sey"}, {}, {"key": "foreign"}, 401),
    ("a subject longer than any registered", {"sub": "c" * 256}, {}, {}, 401),
]


@pytest.mark.parametrize(
    ("claims", "header", "options", "status"), [a[1:] for a in ATTACKS], ids=[a[0] for a in ATTACKS]
)
async def test_every_forged_or_misused_token_is_refused(
    world: World, claims: dict[str, Any], header: dict[str, Any], options: dict[str, Any], status: int
) -> None:
    timed = {k: (now() + v if k in ("iat", "exp", "nbf") and v is not None else v) for k, v in claims.items()}
    token = world.idp.mint("hospital", {"sub": "casey", **timed}, header, **options)
    response = await world.client.get("/api/episodes", headers=bearer(token))
    assert response.status_code == status, response.text
    assert response.json()["resourceType"] == "OperationOutcome"


async def test_an_issuer_holding_u0000_or_a_lone_surrogate_is_refused_like_any_unknown_issuer(world: World) -> None:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    # JSON can write a lone UTF-16 surrogate, which no database driver encodes; the issuer and the claimed subject
    # are looked up before the signature is checked, so such a forged token once made a 500.
    claims = {"iss": world.idp.issuer("hospital"), "sub": "ca\ud800sey"}
    token = ".".join((part({"alg": "RS256", "kid": "k"}), part(claims), "c2ln"))
    response = await world.client.get("/api/episodes", headers=bearer(token))
    assert response.status_code == 401, response.text
    for issuer in (
        world.idp.issuer("hospital") + "\x00",
        world.idp.issuer("hospital") + "\ud800",
        "https://unknown.example/",
    ):
        token = ".".join((part({"alg": "RS256", "kid": "k"}), part({"iss": issuer, "sub": "casey"}), "c2ln"))
        response = await world.client.get("/api/episodes", headers=bearer(token))
        assert response.status_code == 401, response.text
        assert "issuer" in response.json()["issue"][0]["diagnostics"]


async def test_the_same_token_unforged_is_accepted(world: World) -> None:
    token = world.idp.mint("hospital", {"sub": "casey"})
    assert (await world.client.get("/api/episodes", headers=bearer(token))).status_code == 200


async def test_a_token_of_another_issuer_for_the_same_subject_is_not_that_person(world: World) -> None:
    # casey at the peer organization's provider is somebody else: not registered there, so not let in.
    token = world.sign_in("peer-org", "casey")
    assert (await world.client.get("/api/episodes", headers=bearer(token))).status_code == 403
    # Nor can an administrator make the peer organization's provider vouch for a hospital coordinator.
    body = {"issuer": "peer-org", "subject": "casey", "role": "coordinator", "site": "north", "name": "Casey"}
    refused = await world.client.post("/api/admin/people", json=body, headers=world.admin)
    assert refused.status_code == 422
    assert refused.json()["issue"][0]["expression"] == ["site"]


async def test_an_issuer_unbound_from_a_site_no_longer_speaks_for_it(app: FastAPI, world: World) -> None:
    token = world.sign_in("hospital", "casey")
    from service.store.identity import IdentityIssuer

    async with app.state.sessions() as session, session.begin():
        row = await session.get(IdentityIssuer, "hospital")
        assert row is not None
        row.sites = ""
    assert (await world.client.get("/api/episodes", headers=bearer(token))).status_code == 403


async def test_disabling_a_person_or_an_issuer_ends_access_at_once(world: World) -> None:
    token = world.sign_in("hospital", "casey")
    assert (await world.client.get("/api/episodes", headers=bearer(token))).status_code == 200
    off = {"status": "disabled"}
    path = f"/api/admin/people/{world.people['casey']}/status"
    assert (await world.client.put(path, json=off, headers=world.admin)).status_code == 200
    assert (await world.client.get("/api/episodes", headers=bearer(token))).status_code == 403
    on = {"status": "active"}
    assert (await world.client.put(path, json=on, headers=world.admin)).status_code == 200
    assert (await world.client.get("/api/episodes", headers=bearer(token))).status_code == 200
    assert (
        await world.client.put("/api/admin/issuers/hospital/status", json=off, headers=world.admin)
    ).status_code == 200
    assert (await world.client.get("/api/episodes", headers=bearer(token))).status_code == 401


async def test_a_retired_peer_loses_access_and_cannot_come_back_alone(world: World) -> None:
    token = world.sign_in("peer-org", "robin")
    assert (
        await world.client.put("/api/me/status", json={"status": "paused"}, headers=bearer(token))
    ).status_code == 200
    org = world.auth(Role.ORGANIZATION_COORDINATOR, "lead", org="alpha")
    retired = await world.client.put(f"/api/org/peers/{world.peer_id}/status", json={"status": "inactive"}, headers=org)
    assert retired.status_code == 200, retired.text
    assert (await world.client.get("/api/me/clients", headers=bearer(token))).status_code == 403
    back = await world.client.put("/api/me/status", json={"status": "active"}, headers=bearer(token))
    assert back.status_code == 403


async def test_only_administrators_keep_the_registry(world: World, auth: Auth) -> None:
    coordinator = auth(Role.COORDINATOR, "someone", site="north")
    assert (await world.client.get("/api/admin/people", headers=coordinator)).status_code == 403
    org = auth(Role.ORGANIZATION_COORDINATOR, "lead", org="alpha")
    body = {"issuer": "hospital", "subject": "dana", "role": "coordinator", "site": "north", "name": "Dana"}
    assert (await world.client.post("/api/admin/people", json=body, headers=org)).status_code == 403
    listed = (await world.client.get("/api/org/people", headers=org)).json()
    assert [p["subject"] for p in listed] == ["robin"]  # its own peers' sign-ins, nobody else's


# --- systems: SMART Backend Services ---------------------------------------------------------------------------


class Ehr:
    """A hospital EHR with its own key pair, registered as a SMART Backend Services client."""

    def __init__(self, client_id: str, alg: str = "RS384") -> None:
        self.client_id = client_id
        self.key = JsonWebKey.generate_key("RSA", 2048, is_private=True)
        self.kid = f"{client_id}-key"
        self.alg = alg

    def signing_with(self, alg: str) -> Ehr:
        """The same key, used with another algorithm."""
        other = Ehr(self.client_id, alg)
        other.key, other.kid = self.key, self.kid
        return other

    def jwks(self) -> dict[str, Any]:
        return {"keys": [{**self.key.as_dict(is_private=False), "kid": self.kid, "alg": self.alg}]}

    def assertion(self, token_url: str, **changes: Any) -> str:
        claims = {"iss": self.client_id, "sub": self.client_id, "aud": token_url, "exp": now() + 240}
        claims |= {"jti": str(uuid.uuid4()), **changes}
        header = {"alg": self.alg, "kid": self.kid, "typ": "JWT"}
        token: bytes = jwt.encode(header, {k: v for k, v in claims.items() if v is not None}, self.key)
        return token.decode()


TOKEN_URL = "http://peerway.test/auth/token"


async def register(client: httpx.AsyncClient, admin: dict[str, str], ehr: Ehr, scopes: list[str]) -> None:
    body = {"client_id": ehr.client_id, "kind": "ehr", "site": "north", "scopes": scopes, "jwks": ehr.jwks()}
    response = await client.post("/api/admin/clients", json=body, headers=admin)
    assert response.status_code == 201, response.text


async def token_for(client: httpx.AsyncClient, assertion: str, scope: str | None = None) -> httpx.Response:
    form = {
        "grant_type": "client_credentials",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": assertion,
    }
    if scope is not None:
        form["scope"] = scope
    return await client.post("/auth/token", data=form)


async def test_an_ehr_gets_a_token_and_sends_a_discharge(world: World) -> None:
    ehr = Ehr("north-ehr")
    await register(world.client, world.admin, ehr, ["system/Encounter.u", "system/Consent.cru"])
    issued = await token_for(world.client, ehr.assertion(TOKEN_URL), "system/Encounter.u")
    assert issued.status_code == 200, issued.text
    body = issued.json()
    assert (body["token_type"], body["expires_in"], body["scope"]) == ("bearer", 300, "system/Encounter.u")
    assert issued.headers["cache-control"] == "no-store"
    sent = await world.client.post(
        "/fhir/$process-message",
        json=fixture_json(DISCHARGE),
        headers={**bearer(body["access_token"]), "Content-Type": "application/fhir+json"},
    )
    assert sent.status_code == 200, sent.text
    # Its scope is only Encounter.u: recording a Consent needs system/Consent.c.
    consent = await world.client.post("/fhir/Consent", json={}, headers=bearer(body["access_token"]))
    assert consent.status_code == 403
    assert "system/Consent.c" in consent.json()["issue"][0]["diagnostics"]


ASSERTION_ATTACKS: list[tuple[str, Callable[[Ehr], str], int, str]] = [
    ("expiring more than five minutes ahead", lambda e: e.assertion(TOKEN_URL, exp=now() + 900), 401, "invalid_client"),
    ("expired", lambda e: e.assertion(TOKEN_URL, exp=now() - 120), 401, "invalid_client"),
    ("for another token URL", lambda e: e.assertion("https://elsewhere.test/token"), 401, "invalid_client"),
    ("without a jti", lambda e: e.assertion(TOKEN_URL, jti=None), 401, "invalid_client"),
    ("sub other than iss", lambda e: e.assertion(TOKEN_URL, sub="someone-else"), 401, "invalid_client"),
    ("from a client never registered", lambda e: Ehr("stranger").assertion(TOKEN_URL), 401, "invalid_client"),
    ("signed RS256, not RS384/ES384", lambda e: e.signing_with("RS256").assertion(TOKEN_URL), 401, "invalid_client"),
    ("signed by another key", lambda e: Ehr(e.client_id).assertion(TOKEN_URL), 401, "invalid_client"),
]


@pytest.mark.parametrize(
    ("make", "status", "error"), [a[1:] for a in ASSERTION_ATTACKS], ids=[a[0] for a in ASSERTION_ATTACKS]
)
async def test_bad_client_assertions_get_no_token(
    world: World, make: Callable[[Ehr], str], status: int, error: str
) -> None:
    ehr = Ehr("north-ehr")
    await register(world.client, world.admin, ehr, ["system/Encounter.u"])
    response = await token_for(world.client, make(ehr))
    assert response.status_code == status, response.text
    assert response.json()["error"] == error


async def test_an_assertion_works_once(world: World) -> None:
    ehr = Ehr("north-ehr")
    await register(world.client, world.admin, ehr, ["system/Encounter.u"])
    assertion = ehr.assertion(TOKEN_URL)
    assert (await token_for(world.client, assertion)).status_code == 200
    replayed = await token_for(world.client, assertion)
    assert replayed.status_code == 401
    assert "used already" in replayed.json()["error_description"]


async def test_a_scope_never_registered_is_never_granted(world: World) -> None:
    ehr = Ehr("north-ehr")
    await register(world.client, world.admin, ehr, ["system/Encounter.u"])
    response = await token_for(world.client, ehr.assertion(TOKEN_URL), "system/Consent.c")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_scope"


async def test_a_disabled_client_is_cut_off_even_with_a_live_token(world: World) -> None:
    ehr = Ehr("north-ehr")
    await register(world.client, world.admin, ehr, ["system/Encounter.u"])
    token = (await token_for(world.client, ehr.assertion(TOKEN_URL))).json()["access_token"]
    off = {"status": "disabled"}
    assert (
        await world.client.put("/api/admin/clients/north-ehr/status", json=off, headers=world.admin)
    ).status_code == 200
    sent = await world.client.post("/fhir/$process-message", json=fixture_json(DISCHARGE), headers=bearer(token))
    assert sent.status_code == 403


async def test_a_client_disabled_after_its_token_was_verified_is_cut_off_at_once(world: World) -> None:
    ehr = Ehr("north-ehr")
    await register(world.client, world.admin, ehr, ["system/Encounter.u"])
    token = (await token_for(world.client, ehr.assertion(TOKEN_URL))).json()["access_token"]
    first = await world.client.post("/fhir/$process-message", json=fixture_json(DISCHARGE), headers=bearer(token))
    assert first.status_code == 200, first.text  # the token is verified (and kept) here
    off = {"status": "disabled"}
    assert (
        await world.client.put("/api/admin/clients/north-ehr/status", json=off, headers=world.admin)
    ).status_code == 200
    sent = await world.client.post("/fhir/$process-message", json=fixture_json(DISCHARGE), headers=bearer(token))
    assert sent.status_code == 403


async def test_peerways_key_rotates_without_breaking_tokens_already_issued(
    world: World, app: FastAPI, tmp_path: Path
) -> None:
    ehr = Ehr("north-ehr")
    await register(world.client, world.admin, ehr, ["system/Encounter.u"])
    first = (await token_for(world.client, ehr.assertion(TOKEN_URL))).json()["access_token"]
    rotate(Path(app.state.settings.auth_keys_path))  # as `peerway auth rotate-key` does, from another process
    second = (await token_for(world.client, ehr.assertion(TOKEN_URL))).json()["access_token"]
    kids = [k["kid"] for k in (await world.client.get("/auth/jwks.json")).json()["keys"]]
    assert len(kids) == 2
    for token in (first, second):
        sent = await world.client.post("/fhir/$process-message", json=fixture_json(DISCHARGE), headers=bearer(token))
        assert sent.status_code == 200, sent.text


async def test_smart_configuration_tells_a_client_how_to_get_a_token(client: httpx.AsyncClient) -> None:
    config = (await client.get("/.well-known/smart-configuration")).json()
    assert config["token_endpoint"] == TOKEN_URL
    assert config["token_endpoint_auth_methods_supported"] == ["private_key_jwt"]
    assert set(config["token_endpoint_auth_signing_alg_values_supported"]) == {"RS384", "ES384"}
    assert "client-confidential-asymmetric" in config["capabilities"]
    assert "system/Encounter.u" in config["scopes_supported"]
    assert config["code_challenge_methods_supported"] == ["S256"]  # required by SMART 2, though unused here
    assert "issuer" not in config  # only for servers offering sso-openid-connect
    # SMART 2 puts the document at the FHIR base, which the CapabilityStatement names.
    base = (await client.get("/fhir/metadata")).json()["implementation"]["url"]
    at_base = await client.get(urlsplit(base).path + "/.well-known/smart-configuration")
    assert at_base.status_code == 200, at_base.text
    assert at_base.json() == config


@pytest.mark.parametrize(
    ("form", "error"),
    [
        ({}, "invalid_request"),  # RFC 6749 5.2: a required parameter is missing
        ({"grant_type": ""}, "invalid_request"),
        ({"grant_type": "authorization_code"}, "unsupported_grant_type"),  # present, but not one served here
        ({"grant_type": "client_credentials"}, "invalid_request"),  # no assertion
    ],
)
async def test_a_token_request_missing_what_it_needs_says_so_as_oauth_does(
    world: World, form: dict[str, str], error: str
) -> None:
    response = await world.client.post("/auth/token", data=form)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == error
