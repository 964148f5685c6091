"""SMART Backend Services as the EHR sees it: the assertion Peerway signs, the token it reuses and renews, and
the one retry after a 401 — against a token endpoint and a FHIR server played by httpx.MockTransport."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

from service.ehr.client import EhrClient
from service.ehr.smart import SigningKeyError, SmartBackendTokens, load_signing_key, public_jwks
from service.ehr.tokens import StaticToken
from service.errors import UpstreamError
from tests.support.keys import KeyKind, generate, write_key

TOKEN_URL = "https://ehr.example.org/auth/token"
CLIENT_ID = "peerway-test"


class TokenEndpoint:
    """A token endpoint that records each assertion and answers tokens t1, t2, ... living `lifetime` s."""

    def __init__(self, lifetime: int = 300, error: str | None = None) -> None:
        self.lifetime = lifetime
        self.error = error
        self.forms: list[dict[str, str]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
        self.forms.append(form)
        if self.error:
            return httpx.Response(400, json={"error": self.error})
        return httpx.Response(
            200,
            json={"access_token": f"t{len(self.forms)}", "token_type": "bearer", "expires_in": self.lifetime},
        )


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def provider(
    key_path: Path, endpoint: TokenEndpoint, clock: Clock | None = None, kid: str | None = None
) -> SmartBackendTokens:
    return SmartBackendTokens(
        TOKEN_URL,
        CLIENT_ID,
        load_signing_key(key_path, kid),
        "system/Encounter.cu system/Practitioner.cu system/CareTeam.cu",
        transport=httpx.MockTransport(endpoint),
        clock=clock or Clock(),
    )


@pytest.mark.parametrize(("kind", "alg"), [("RSA", "RS384"), ("EC", "ES384")])
@pytest.mark.parametrize("file_format", ["pem", "jwks"])
async def test_the_assertion_is_what_smart_backend_services_asks_for(
    tmp_path: Path, kind: KeyKind, alg: str, file_format: Literal["pem", "jwks"]
) -> None:
    key = generate(kind, kid="k1" if file_format == "jwks" else None)
    endpoint = TokenEndpoint()
    tokens = provider(write_key(tmp_path, key, file_format), endpoint)
    before = int(time.time())
    assert await tokens.token() == "t1"
    assert await tokens.refresh("t1") == "t2"
    await tokens.aclose()

    jtis = set()
    for form in endpoint.forms:
        assert form["grant_type"] == "client_credentials"
        assert form["scope"] == "system/Encounter.cu system/Practitioner.cu system/CareTeam.cu"
        assert form["client_assertion_type"] == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
        decoded = jwt.decode(form["client_assertion"], key, algorithms=[alg])
        assert decoded.header["alg"] == alg
        assert decoded.header["typ"] == "JWT"
        assert decoded.header["kid"] == ("k1" if file_format == "jwks" else key.thumbprint())
        claims = decoded.claims
        assert claims["iss"] == claims["sub"] == CLIENT_ID
        assert claims["aud"] == TOKEN_URL
        assert before <= claims["exp"] - 1
        assert claims["exp"] <= int(time.time()) + 300
        jtis.add(claims["jti"])
    assert len(jtis) == 2  # a fresh jti each time


async def test_the_token_is_reused_then_renewed_a_minute_before_it_expires(tmp_path: Path) -> None:
    clock = Clock()
    endpoint = TokenEndpoint(lifetime=300)
    tokens = provider(write_key(tmp_path, generate("EC"), "pem"), endpoint, clock)
    assert await tokens.token() == "t1"
    clock.now += 239  # 61 s left
    assert await tokens.token() == "t1"
    clock.now += 1  # 60 s left: renewed
    assert await tokens.token() == "t2"
    assert len(endpoint.forms) == 2


async def test_a_short_lived_token_is_renewed_at_half_its_life(tmp_path: Path) -> None:
    clock = Clock()
    endpoint = TokenEndpoint(lifetime=10)
    tokens = provider(write_key(tmp_path, generate("RSA"), "pem"), endpoint, clock)
    assert await tokens.token() == "t1"
    clock.now += 4.9
    assert await tokens.token() == "t1"
    clock.now += 0.1
    assert await tokens.token() == "t2"


async def test_a_refused_client_is_a_transient_failure_not_a_dead_letter(tmp_path: Path) -> None:
    tokens = provider(write_key(tmp_path, generate("RSA"), "pem"), TokenEndpoint(error="invalid_client"))
    with pytest.raises(UpstreamError) as raised:
        await tokens.token()
    assert raised.value.http_status is None
    assert "invalid_client" in raised.value.diagnostics


class Fhir:
    """A FHIR server that answers 401 to the first `rejections` requests, then 200, recording Authorization."""

    def __init__(self, rejections: int) -> None:
        self.rejections = rejections
        self.seen: list[str | None] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request.headers.get("Authorization"))
        if len(self.seen) <= self.rejections:
            return httpx.Response(401, json={"resourceType": "OperationOutcome", "issue": []})
        return httpx.Response(200, json=json.loads(request.content))


ENCOUNTER = {"resourceType": "Encounter", "id": "c-1", "status": "finished"}


async def test_a_401_gets_a_fresh_token_and_the_request_is_made_again(tmp_path: Path) -> None:
    endpoint = TokenEndpoint()
    fhir = Fhir(rejections=1)
    tokens = provider(write_key(tmp_path, generate("EC"), "pem"), endpoint)
    ehr = EhrClient("https://ehr.example.org/fhir", tokens=tokens, transport=httpx.MockTransport(fhir))
    assert (await ehr.put(ENCOUNTER))["id"] == "c-1"
    assert fhir.seen == ["Bearer t1", "Bearer t2"]
    await ehr.aclose()


async def test_a_401_after_a_fresh_token_is_the_ehrs_final_answer(tmp_path: Path) -> None:
    fhir = Fhir(rejections=2)
    tokens = provider(write_key(tmp_path, generate("EC"), "pem"), TokenEndpoint())
    ehr = EhrClient("https://ehr.example.org/fhir", tokens=tokens, transport=httpx.MockTransport(fhir))
    with pytest.raises(UpstreamError) as raised:
        await ehr.put(ENCOUNTER)
    assert raised.value.http_status == 401
    assert fhir.seen == ["Bearer t1", "Bearer t2"]  # refreshed once, not twice
    await ehr.aclose()


async def test_a_static_token_is_not_retried_on_401() -> None:
    fhir = Fhir(rejections=1)
    ehr = EhrClient("https://ehr.example.org/fhir", tokens=StaticToken("s3cret"), transport=httpx.MockTransport(fhir))
    with pytest.raises(UpstreamError) as raised:
        await ehr.put(ENCOUNTER)
    assert raised.value.http_status == 401
    assert fhir.seen == ["Bearer s3cret"]
    await ehr.aclose()


def test_the_published_jwks_holds_the_public_key_only(tmp_path: Path) -> None:
    key = generate("RSA", kid="peerway-2026")
    published = public_jwks(load_signing_key(write_key(tmp_path, key, "jwks")))
    [jwk] = published["keys"]
    assert jwk["kid"] == "peerway-2026"
    assert jwk["alg"] == "RS384"
    assert "d" not in jwk
    assert "p" not in jwk
    assert RSAKey.import_key(jwk).as_dict(private=False)["n"] == key.as_dict(private=False)["n"]
    assert public_jwks(None) == {"keys": []}


def test_keys_smart_does_not_allow_are_refused_when_loaded(tmp_path: Path) -> None:
    p256 = tmp_path / "p256.pem"
    p256.write_bytes(ECKey.generate_key("P-256").as_pem(private=True))
    with pytest.raises(SigningKeyError, match="P-384"):
        load_signing_key(p256)
    public = tmp_path / "public.pem"
    public.write_bytes(generate("RSA").as_pem(private=False))
    with pytest.raises(SigningKeyError, match="public key"):
        load_signing_key(public)
    with pytest.raises(SigningKeyError, match="cannot read"):
        load_signing_key(tmp_path / "missing.pem")


def test_a_jwks_with_several_keys_needs_the_kid(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    keys: list[dict[str, Any]] = [generate("RSA", kid=k).as_dict(private=True) for k in ("a", "b")]
    path.write_text(json.dumps({"keys": keys}))
    with pytest.raises(SigningKeyError, match="2 private"):
        load_signing_key(path)
    assert load_signing_key(path, "b").kid == "b"
