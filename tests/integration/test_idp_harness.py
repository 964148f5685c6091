"""The Node test IdP (tests/idp) behaves like a real OpenID Connect provider where our tests rely on it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from authlib.jose import JsonWebKey, JsonWebToken
from authlib.jose.errors import BadSignatureError, DecodeError, JoseError

from tests.support.idp import TestIdp, TestIdpError, pkce_pair, run_test_idp

REDIRECT_URI = "http://peerway.test/auth/callback"
API_AUDIENCE = "http://peerway.test/api"
CLIENT_SECRET = "a-confidential-client-secret-0123456789"
CONFIG: dict[str, Any] = {
    "hospital": {
        "clients": [
            {"client_id": "peerway", "redirect_uris": [REDIRECT_URI]},
            {
                "client_id": "peerway-server",
                "client_secret": CLIENT_SECRET,
                "token_endpoint_auth_method": "client_secret_basic",
                "redirect_uris": [REDIRECT_URI],
            },
        ],
        "accounts": [
            {
                "sub": "coord-1",
                "name": "Casey Coordinator",
                "email": "casey@hospital.test",
                "roles": ["coordinator"],
                "access_token_claims": {"roles": ["coordinator"]},
            },
            {"sub": "nurse-1", "name": "Noor Nurse"},
        ],
    },
    "peer-org": {
        "alg": "ES256",
        "audience": API_AUDIENCE,
        "access_token_ttl": 120,
        "clients": [
            {"client_id": "peerway-peers", "redirect_uris": [REDIRECT_URI], "grant_types": ["authorization_code"]}
        ],
        "accounts": [{"sub": "peer-7", "name": "Pat Peer", "email": "pat@peer-org.test"}],
    },
}
ALGS = ["RS256", "RS384", "PS256", "ES256", "ES384"]


@pytest.fixture(scope="module")
def idp_server() -> Iterator[TestIdp]:
    with run_test_idp(CONFIG) as server:
        yield server


@pytest.fixture
def idp(idp_server: TestIdp) -> TestIdp:
    idp_server.reset()
    return idp_server


def verify(token: str, jwks: dict[str, Any], algs: list[str] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims of `token` after checking its signature against `jwks` (authlib picks the key by kid)."""
    claims = JsonWebToken(algs or ALGS).decode(token, JsonWebKey.import_key_set(jwks))
    return dict(claims.header), dict(claims)


def unverified_header(token: str) -> dict[str, Any]:
    segment = token.split(".")[0]
    header: dict[str, Any] = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    return header


def hospital_tokens(idp: TestIdp, sub: str = "coord-1", scope: str = "openid profile") -> dict[str, Any]:
    return idp.authorize_with_pkce("hospital", "peerway", REDIRECT_URI, sub, scope=scope)


def authorization_url(idp: TestIdp, issuer: str, client_id: str, **params: str) -> str:
    query = {"client_id": client_id, "redirect_uri": REDIRECT_URI, "response_type": "code", "scope": "openid"}
    query.update(params)
    return str(httpx.URL(idp.discovery(issuer)["authorization_endpoint"], params=query))


# ----- discovery and keys -----


@pytest.mark.parametrize("name", ["hospital", "peer-org"])
def test_discovery_document_of_each_issuer(idp: TestIdp, name: str) -> None:
    issuer = idp.issuer(name)
    assert issuer == f"{idp.root_url}/{name}"
    doc = httpx.get(f"{issuer}/.well-known/openid-configuration", trust_env=False).json()
    assert doc["issuer"] == issuer
    for endpoint in ("authorization_endpoint", "token_endpoint", "jwks_uri", "userinfo_endpoint"):
        assert doc[endpoint].startswith(f"{issuer}/"), endpoint
    assert doc["code_challenge_methods_supported"] == ["S256"]
    assert doc["response_types_supported"] == ["code"]
    assert "none" in doc["token_endpoint_auth_methods_supported"]
    assert doc["id_token_signing_alg_values_supported"] == [CONFIG[name].get("alg", "RS256")]


def test_each_issuer_has_its_own_public_signing_key(idp: TestIdp) -> None:
    hospital, peer_org = idp.jwks("hospital"), idp.jwks("peer-org")
    assert [(k["kty"], k["alg"], k["use"]) for k in hospital["keys"]] == [("RSA", "RS256", "sig")]
    assert [(k["kty"], k["crv"], k["alg"]) for k in peer_org["keys"]] == [("EC", "P-256", "ES256")]
    for key in hospital["keys"] + peer_org["keys"]:
        assert not {"d", "p", "q", "dp", "dq", "qi"} & key.keys(), "private key material in the JWKS"
    assert hospital["keys"][0]["kid"] != peer_org["keys"][0]["kid"]
    assert idp.state("hospital")["kids"] == [hospital["keys"][0]["kid"]]


# ----- authorization code + PKCE -----


def test_pkce_flow_at_the_hospital_gives_verifiable_jwt_access_and_id_tokens(idp: TestIdp) -> None:
    started = time.time()
    tokens = hospital_tokens(idp)

    assert tokens["token_type"] == "Bearer"
    assert tokens["expires_in"] == 300
    assert "refresh_token" not in tokens
    header, claims = verify(tokens["access_token"], idp.jwks("hospital"))
    assert header["alg"] == "RS256"
    assert header["typ"] == "at+jwt"
    assert header["kid"] == idp.state("hospital")["kid"]
    assert claims["iss"] == idp.issuer("hospital")
    assert claims["aud"] == "peerway"
    assert claims["sub"] == "coord-1"
    assert claims["client_id"] == "peerway"
    assert claims["roles"] == ["coordinator"]
    assert set(claims["scope"].split()) == {"openid", "profile"}
    assert claims["exp"] - claims["iat"] == 300
    assert started - 5 <= claims["iat"] <= time.time() + 5

    id_header, id_claims = verify(tokens["id_token"], idp.jwks("hospital"))
    assert id_header["alg"] == "RS256"
    assert id_claims["iss"] == idp.issuer("hospital")
    assert id_claims["aud"] == "peerway"  # the client
    assert id_claims["sub"] == "coord-1"
    assert id_claims["name"] == "Casey Coordinator"
    assert id_claims["roles"] == ["coordinator"]
    assert "email" not in id_claims  # not requested

    assert [(t["sub"], t["aud"], t["client_id"]) for t in idp.issued_tokens("hospital")] == [
        ("coord-1", "peerway", "peerway")
    ]


def test_pkce_flow_at_the_peer_org_uses_its_own_key_alg_audience_and_lifetime(idp: TestIdp) -> None:
    tokens = idp.authorize_with_pkce("peer-org", "peerway-peers", REDIRECT_URI, "peer-7", scope="openid profile email")

    assert tokens["expires_in"] == 120
    header, claims = verify(tokens["access_token"], idp.jwks("peer-org"))
    assert header["alg"] == "ES256"
    assert (claims["iss"], claims["aud"], claims["sub"]) == (idp.issuer("peer-org"), API_AUDIENCE, "peer-7")
    assert claims["exp"] - claims["iat"] == 120
    _, id_claims = verify(tokens["id_token"], idp.jwks("peer-org"))
    assert (id_claims["sub"], id_claims["email"], id_claims["aud"]) == ("peer-7", "pat@peer-org.test", "peerway-peers")

    with pytest.raises((BadSignatureError, JoseError, ValueError)):
        verify(tokens["access_token"], idp.jwks("hospital"))  # another issuer's keys do not verify it


def test_each_account_gets_its_own_subject(idp: TestIdp) -> None:
    coordinator = verify(hospital_tokens(idp, "coord-1")["access_token"], idp.jwks("hospital"))[1]
    nurse = verify(hospital_tokens(idp, "nurse-1")["access_token"], idp.jwks("hospital"))[1]
    assert (coordinator["sub"], nurse["sub"]) == ("coord-1", "nurse-1")
    assert "roles" not in nurse


def test_resource_indicator_names_the_audience(idp: TestIdp) -> None:
    tokens = idp.authorize_with_pkce("peer-org", "peerway-peers", REDIRECT_URI, "peer-7", resource=API_AUDIENCE)
    assert verify(tokens["access_token"], idp.jwks("peer-org"))[1]["aud"] == API_AUDIENCE

    with pytest.raises(TestIdpError, match="invalid_target"):
        idp.authorize_with_pkce(
            "peer-org", "peerway-peers", REDIRECT_URI, "peer-7", resource="https://elsewhere.test/api"
        )


def test_refresh_tokens_with_offline_access(idp: TestIdp) -> None:
    tokens = hospital_tokens(idp, scope="openid profile offline_access")
    assert tokens["refresh_token"]
    refreshed = idp.refresh("hospital", "peerway", tokens["refresh_token"])
    _, claims = verify(refreshed["access_token"], idp.jwks("hospital"))
    assert (claims["sub"], claims["aud"]) == ("coord-1", "peerway")
    assert refreshed["refresh_token"] != tokens["refresh_token"]  # rotated for a public client

    with pytest.raises(TestIdpError, match="invalid_grant"):
        idp.refresh("hospital", "peerway", tokens["refresh_token"])  # a used refresh token is spent


def test_a_confidential_client_authenticates_at_the_token_endpoint(idp: TestIdp) -> None:
    tokens = idp.authorize_with_pkce("hospital", "peerway-server", REDIRECT_URI, "coord-1", client_secret=CLIENT_SECRET)
    _, claims = verify(tokens["access_token"], idp.jwks("hospital"))
    assert (claims["client_id"], claims["sub"], claims["aud"]) == ("peerway-server", "coord-1", "peerway")

    with pytest.raises(TestIdpError, match="invalid_client"):
        idp.authorize_with_pkce("hospital", "peerway-server", REDIRECT_URI, "coord-1")  # no secret


def test_public_clients_must_use_pkce(idp: TestIdp) -> None:
    answer = idp.login(authorization_url(idp, "hospital", "peerway", login_hint="coord-1"))
    assert answer.error == "invalid_request"
    assert "PKCE" in answer.params["error_description"]


def test_the_code_needs_the_matching_verifier(idp: TestIdp) -> None:
    _, challenge = pkce_pair()
    answer = idp.login(
        authorization_url(
            idp, "hospital", "peerway", code_challenge=challenge, code_challenge_method="S256", state="s"
        ),
        "coord-1",
    )
    assert answer.code is not None
    assert answer.params["iss"] == idp.issuer("hospital")
    other_verifier, _ = pkce_pair()
    response = httpx.post(
        idp.discovery("hospital")["token_endpoint"],
        data={
            "grant_type": "authorization_code",
            "code": answer.code,
            "redirect_uri": REDIRECT_URI,
            "client_id": "peerway",
            "code_verifier": other_verifier,
        },
        trust_env=False,
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


def test_an_unknown_account_is_denied(idp: TestIdp) -> None:
    _, challenge = pkce_pair()
    url = authorization_url(idp, "hospital", "peerway", code_challenge=challenge, code_challenge_method="S256")
    answer = idp.login(url, "mallory")
    assert answer.location.startswith(REDIRECT_URI)
    assert answer.error == "access_denied"
    with pytest.raises(TestIdpError, match="access_denied"):
        idp.authorize_with_pkce("hospital", "peerway", REDIRECT_URI, "mallory")


def test_an_unregistered_redirect_uri_is_refused_without_redirecting(idp: TestIdp) -> None:
    _, challenge = pkce_pair()
    url = authorization_url(
        idp,
        "hospital",
        "peerway",
        redirect_uri="http://attacker.test/cb",
        code_challenge=challenge,
        code_challenge_method="S256",
    )
    response = httpx.get(url, trust_env=False)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_redirect_uri"


# ----- key rotation -----


def test_rotation_keeping_the_old_key(idp: TestIdp) -> None:
    old_token = hospital_tokens(idp)["access_token"]
    old_kid = unverified_header(old_token)["kid"]

    new_kid = idp.rotate_keys("hospital")

    assert new_kid != old_kid
    jwks = idp.jwks("hospital")
    assert [k["kid"] for k in jwks["keys"]] == [new_kid, old_kid]
    assert verify(old_token, jwks)[1]["sub"] == "coord-1"  # issued before, still verifies
    new_token = hospital_tokens(idp)["access_token"]
    header, claims = verify(new_token, jwks)
    assert header["kid"] == new_kid
    assert claims["iss"] == idp.issuer("hospital")
    assert idp.state("peer-org")["kids"] == [k["kid"] for k in idp.jwks("peer-org")["keys"]]  # untouched


def test_rotation_dropping_the_old_key(idp: TestIdp) -> None:
    old_token = hospital_tokens(idp)["access_token"]
    old_kid = unverified_header(old_token)["kid"]

    new_kid = idp.rotate_keys("hospital", keep_old=False)

    jwks = idp.jwks("hospital")
    assert [k["kid"] for k in jwks["keys"]] == [new_kid]
    with pytest.raises((BadSignatureError, JoseError, ValueError)):
        verify(old_token, jwks)
    assert old_kid not in idp.state("hospital")["kids"]


def test_rotation_to_another_algorithm(idp: TestIdp) -> None:
    kid = idp.rotate_keys("hospital", alg="PS256")
    tokens = hospital_tokens(idp)
    header, _ = verify(tokens["access_token"], idp.jwks("hospital"))
    assert (header["alg"], header["kid"]) == ("PS256", kid)
    assert unverified_header(tokens["id_token"])["alg"] == "PS256"


def test_reset_restores_the_first_key_and_settings(idp: TestIdp) -> None:
    first = idp.state("hospital")["kid"]
    idp.rotate_keys("hospital", keep_old=False)
    idp.settings("hospital", access_token_ttl=30, audience="someone-else")
    tokens = hospital_tokens(idp)
    assert tokens["expires_in"] == 30
    assert verify(tokens["access_token"], idp.jwks("hospital"))[1]["aud"] == "someone-else"

    idp.reset()

    assert idp.state("hospital")["kids"] == [first]
    assert idp.issued_tokens("hospital") == []
    assert hospital_tokens(idp)["expires_in"] == 300


# ----- minted tokens -----


def test_mint_signs_the_requested_claims_with_the_current_key(idp: TestIdp) -> None:
    now = int(time.time())
    token = idp.mint(
        "hospital",
        {"sub": "coord-1", "exp": now - 60, "nbf": now + 600, "iat": now - 3600, "aud": "not-peerway", "extra": 1},
        {"jku": "https://attacker.test/jwks.json", "x5u": "https://attacker.test/cert.pem", "cty": "x"},
    )
    header, claims = verify(token, idp.jwks("hospital"))  # signature only: authlib does not check exp here
    assert header == {
        "alg": "RS256",
        "typ": "at+jwt",
        "kid": idp.state("hospital")["kid"],
        "jku": "https://attacker.test/jwks.json",
        "x5u": "https://attacker.test/cert.pem",
        "cty": "x",
    }
    assert claims["iss"] == idp.issuer("hospital")
    assert (claims["sub"], claims["aud"], claims["exp"], claims["nbf"], claims["iat"], claims["extra"]) == (
        "coord-1",
        "not-peerway",
        now - 60,
        now + 600,
        now - 3600,
        1,
    )
    assert idp.issued_tokens("hospital") == []


def test_mint_defaults_and_removals(idp: TestIdp) -> None:
    token = idp.mint("peer-org", {"sub": "peer-7", "exp": None}, {"typ": None, "kid": "made-up"})
    header = unverified_header(token)
    assert header == {"alg": "ES256", "kid": "made-up"}
    claims = JsonWebToken(["ES256"]).decode(token, JsonWebKey.import_key(idp.jwks("peer-org")["keys"][0]))
    assert claims["aud"] == API_AUDIENCE
    assert claims["iss"] == idp.issuer("peer-org")
    assert "exp" not in claims
    assert claims["jti"]

    bare = idp.mint("hospital", {"sub": "x"}, {"alg": "RS256"}, defaults=False)
    assert unverified_header(bare) == {"alg": "RS256"}
    assert dict(JsonWebToken(["RS256"]).decode(bare, JsonWebKey.import_key(idp.jwks("hospital")["keys"][0]))) == {
        "sub": "x"
    }


def test_mint_with_an_old_key_a_foreign_key_or_no_signature(idp: TestIdp) -> None:
    old_kid = idp.state("hospital")["kid"]
    idp.rotate_keys("hospital")
    by_old = idp.mint("hospital", {"sub": "coord-1"}, key=old_kid)
    assert verify(by_old, idp.jwks("hospital"))[0]["kid"] == old_kid

    forged = idp.mint("hospital", {"sub": "coord-1"}, {"kid": old_kid}, key="foreign", embed_jwk=True)
    header = unverified_header(forged)
    assert header["kid"] == old_kid
    assert header["jwk"]["kty"] == "RSA"
    assert "d" not in header["jwk"]
    with pytest.raises(BadSignatureError):
        verify(forged, idp.jwks("hospital"))
    assert JsonWebToken(["RS256"]).decode(forged, JsonWebKey.import_key(header["jwk"]))["sub"] == "coord-1"

    unsigned = idp.mint("hospital", {"sub": "coord-1"}, {"alg": "none"})
    assert unsigned.endswith(".")
    assert unverified_header(unsigned)["alg"] == "none"
    with pytest.raises((DecodeError, JoseError, ValueError)):
        verify(unsigned, idp.jwks("hospital"))


def test_mint_hmac_with_the_public_key_as_secret(idp: TestIdp) -> None:
    """The algorithm-confusion attack: HS256 keyed with the issuer's public key."""
    token = idp.mint("hospital", {"sub": "coord-1"}, {"alg": "HS256"})
    public_pem = JsonWebKey.import_key(idp.jwks("hospital")["keys"][0]).as_pem(is_private=False)
    header_segment, payload_segment, signature = token.split(".")
    expected = hmac.new(public_pem, f"{header_segment}.{payload_segment}".encode(), hashlib.sha256).digest()
    assert base64.urlsafe_b64encode(expected).rstrip(b"=").decode() == signature

    with_secret = idp.mint("hospital", {"sub": "coord-1"}, {"alg": "HS256"}, secret="s3cret")
    assert JsonWebToken(["HS256"]).decode(with_secret, "s3cret")["sub"] == "coord-1"


def test_admin_errors_are_reported(idp: TestIdp) -> None:
    with pytest.raises(TestIdpError, match="no issuer"):
        idp.issuer("nowhere")
    with pytest.raises(TestIdpError, match="no key"):
        idp.mint("hospital", {}, key="no-such-kid")
    with pytest.raises(TestIdpError, match="needs an EC key"):
        idp.mint("hospital", {}, {"alg": "ES256"})
    with pytest.raises(TestIdpError, match="alg must be one of"):
        idp.rotate_keys("hospital", alg="HS256")


@pytest.mark.parametrize(
    ("config", "reason"),
    [
        ({"hospital": {"alg": "none"}}, "alg must be one of"),
        ({"hospital": {"clients": [{"client_id": "peerway"}]}}, "client peerway: redirect_uris is mandatory"),
        ({"__admin": {}}, "an issuer name is a path segment"),
    ],
)
def test_a_bad_config_stops_the_server_at_start(config: dict[str, Any], reason: str) -> None:
    with pytest.raises(TestIdpError, match=reason), run_test_idp(config):
        pass
