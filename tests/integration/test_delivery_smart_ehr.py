"""The test EHR's token endpoint refuses what a real SMART Backend Services server refuses, so Peerway's
client is held to the rules: the signature, iss = sub, aud = the token URL, exp at most 5 minutes ahead, a
jti used once, RS384/ES384 only; and /fhir takes only live tokens whose scopes permit the interaction."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

from tests.support import smart_ehr
from tests.support.ehr import TestEhr, run_test_ehr
from tests.support.keys import generate, public_jwks

pytestmark = pytest.mark.ehr
CLIENT_ID = "harness-client"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
KEY = generate("EC", kid="k1")


@pytest.fixture(scope="module")
def smart_server() -> Iterator[TestEhr]:
    """A test EHR configured from its environment: one client, tokens required, living 300 s."""
    clients = {CLIENT_ID: {"jwks": public_jwks(KEY, "k1"), "scope": "system/Encounter.crus"}}
    env = {"EHR_SMART_CLIENTS": json.dumps(clients), "EHR_REQUIRE_SMART": "1"}
    with run_test_ehr(env=env) as server:
        yield server


@pytest.fixture
def ehr(smart_server: TestEhr) -> TestEhr:
    smart_server.reset()
    return smart_server


def assertion(ehr: TestEhr, *, alg: str = "ES384", key: RSAKey | ECKey = KEY, **changes: Any) -> str:
    """A client assertion as SMART asks for it, with `changes` to its claims (None: left out)."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": CLIENT_ID,
        "sub": CLIENT_ID,
        "aud": smart_ehr.token_url(ehr),
        "iat": now,
        "exp": now + 240,
        "jti": str(uuid.uuid4()),
    }
    claims |= changes
    present = {name: value for name, value in claims.items() if value is not None}
    return jwt.encode({"alg": alg, "kid": "k1", "typ": "JWT"}, present, key, algorithms=[alg])


def ask(ehr: TestEhr, client_assertion: str, scope: str = "system/Encounter.cru") -> httpx.Response:
    return httpx.post(
        smart_ehr.token_url(ehr),
        data={
            "grant_type": "client_credentials",
            "scope": scope,
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": client_assertion,
        },
    )


def test_a_good_assertion_gets_a_token_for_the_scopes_the_client_may_have(ehr: TestEhr) -> None:
    answer = ask(ehr, assertion(ehr), scope="system/Encounter.crus system/Patient.r")
    assert answer.status_code == 200, answer.text
    assert answer.headers["cache-control"] == "no-store"
    token = answer.json()
    assert token["token_type"] == "bearer"
    assert token["expires_in"] == 300
    assert token["scope"] == "system/Encounter.crus"  # Patient was never granted to this client
    with httpx.Client(base_url=ehr.base_url, headers={"Authorization": f"Bearer {token['access_token']}"}) as fhir:
        assert fhir.get("/Encounter").status_code == 200  # s: search
        assert fhir.get("/Patient").status_code == 403
        assert fhir.delete("/Encounter/x").status_code == 403  # no d
        assert httpx.get(f"{ehr.base_url}/Encounter").status_code == 401  # no token
        assert httpx.get(f"{ehr.base_url}/metadata").status_code == 200  # discovery stays public
        smart_ehr.revoke_all(ehr)
        refused = fhir.get("/Encounter")
    assert refused.status_code == 401
    assert 'error="invalid_token"' in refused.headers["www-authenticate"]


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"aud": "https://elsewhere.example/token"}, "aud"),
        ({"sub": "someone-else"}, "sub"),
        ({"iss": "stranger", "sub": "stranger"}, "no client"),
        ({"exp": int(time.time()) + 3600}, "five minutes"),
        ({"exp": int(time.time()) - 60}, "expired"),
        ({"jti": None}, "jti"),
        ({"key": generate("EC", kid="k1")}, "signature"),
    ],
)
def test_a_bad_assertion_is_an_invalid_client(ehr: TestEhr, changes: dict[str, Any], why: str) -> None:
    answer = ask(ehr, assertion(ehr, **changes))
    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid_client"
    assert why in answer.json()["error_description"]


def test_a_jti_is_accepted_once(ehr: TestEhr) -> None:
    reused = assertion(ehr)
    assert ask(ehr, reused).status_code == 200
    again = ask(ehr, reused)
    assert again.status_code == 400
    assert "jti" in again.json()["error_description"]


def test_only_rs384_and_es384_are_accepted(ehr: TestEhr) -> None:
    key = generate("RSA", kid="k1")
    answer = ask(ehr, assertion(ehr, alg="RS256", key=key))
    assert answer.status_code == 400
    assert "RS256" in answer.json()["error_description"]
