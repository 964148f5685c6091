"""Every endpoint but metadata and health needs a valid bearer token; the CapabilityStatement tells the truth."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
from authlib.jose import jwt
from fastapi import FastAPI
from fhir.resources.R4B.capabilitystatement import CapabilityStatement

from service.auth import Role, mint_token, verify_token
from service.cli import main as cli_main
from service.errors import Unauthorized
from service.main import create_app
from service.settings import Settings

Auth = Callable[..., dict[str, str]]
PUBLIC = {"/fhir/metadata", "/healthz", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc", "/cds-services"}
PUBLIC |= {"/.well-known/jwks.json"}  # Peerway's public key, for the EHR to register
PUBLIC |= {"/auth/token", "/.well-known/smart-configuration", "/auth/jwks.json"}  # SMART Backend Services
PUBLIC |= {"/fhir/.well-known/smart-configuration"}
PUBLIC |= {"/readyz"}
# Peerway's own conformance resources (they describe the interface, not anyone): read, vread, search.
PUBLIC |= {
    path
    for kind in (
        "StructureDefinition",
        "CodeSystem",
        "ValueSet",
        "OperationDefinition",
        "SearchParameter",
        "Measure",
        "Questionnaire",
    )
    for path in (
        f"/fhir/{kind}",
        f"/fhir/{kind}/_search",
        f"/fhir/{kind}/{{id}}",
        f"/fhir/{kind}/{{id}}/_history/{{id}}",
    )
}


async def test_metadata_is_a_valid_r4_capability_statement_without_a_token(client: httpx.AsyncClient) -> None:
    response = await client.get("/fhir/metadata")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/fhir+json; charset=utf-8"
    statement = response.json()
    CapabilityStatement.model_validate(statement)
    assert statement["fhirVersion"] == "4.0.1"


async def test_metadata_carries_an_etag_and_answers_if_none_match_with_304(client: httpx.AsyncClient) -> None:
    first = await client.get("/fhir/metadata")
    etag = first.headers["ETag"]
    assert etag.startswith('W/"')
    assert (await client.get("/fhir/metadata")).headers["ETag"] == etag  # the same statement, the same tag
    for asked in (etag, etag.removeprefix("W/"), f'"other", {etag}', "*"):
        again = await client.get("/fhir/metadata", headers={"If-None-Match": asked})
        assert again.status_code == 304, asked
        assert again.content == b""
        assert again.headers["ETag"] == etag
    changed = await client.get("/fhir/metadata", headers={"If-None-Match": 'W/"an-older-one"'})
    assert changed.status_code == 200
    assert changed.json() == first.json()


async def test_the_capability_statement_only_names_what_is_served(app: FastAPI, client: httpx.AsyncClient) -> None:
    statement = (await client.get("/fhir/metadata")).json()
    routes = served(app)
    expected = {
        "read": ("GET", "/fhir/{type}/{{id}}"),
        "vread": ("GET", "/fhir/{type}/{{id}}/_history/{{id}}"),
        "create": ("POST", "/fhir/{type}"),
        "update": ("PUT", "/fhir/{type}/{{id}}"),
        "search-type": ("GET", "/fhir/{type}"),
    }
    checked = 0
    for resource in statement["rest"][0]["resource"]:
        for interaction in resource.get("interaction", []):
            method, template = expected[interaction["code"]]
            assert (method, template.format(type=resource["type"])) in routes, (resource["type"], interaction)
            checked += 1
        for operation in resource.get("operation", []):
            assert ("GET", f"/fhir/{resource['type']}/{{id}}/${operation['name']}") in routes
            checked += 1
    for operation in statement["rest"][0]["operation"]:
        assert ("POST", f"/fhir/${operation['name']}") in routes
        checked += 1
    assert checked >= 8


def served(app: FastAPI) -> set[tuple[str, str]]:
    """(METHOD, path with every path parameter written {id}) of every operation in the OpenAPI document."""
    return {
        (method.upper(), re.sub(r"\{[a-z_]+\}", "{id}", path))
        for path, operations in app.openapi()["paths"].items()
        for method in operations
    }


async def test_health_needs_no_token(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}


async def test_every_other_endpoint_refuses_a_missing_token_with_an_outcome(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    checked = 0
    for method, path in served(app):
        if path in PUBLIC:
            continue
        response = await client.request(method, path.replace("{id}", "some-id"), content=b"{}")
        assert response.status_code == 401, (method, path)
        assert response.json()["issue"][0]["code"] == "login"
        assert response.headers["www-authenticate"] == "Bearer"
        checked += 1
    assert checked >= 10


def dev_settings(settings: Settings, **changes: object) -> Settings:
    return settings.model_copy(update={"env": "dev", **changes})


@pytest.fixture
async def dev_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """Peerway in development mode (PEERWAY_ENV=dev), where HS256 development tokens are accepted."""
    app = create_app(dev_settings(settings))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://peerway.test") as client,
    ):
        yield client


@pytest.mark.parametrize(
    "token_for",
    [
        lambda s: mint_token(s, "x", Role.COORDINATOR, ttl=-120),  # expired
        lambda s: jwt.encode(
            {"alg": "HS256"},
            {
                "iss": s.jwt_issuer,
                "aud": s.jwt_audience,
                "sub": "x",
                "role": "coordinator",
                "exp": int(time.time()) + 60,
            },
            "another-secret-another-secret-another",
        ).decode(),
        lambda s: jwt.encode(
            {"alg": "HS256"},
            {
                "iss": "someone-else",
                "aud": s.jwt_audience,
                "sub": "x",
                "role": "coordinator",
                "exp": int(time.time()) + 60,
            },
            s.jwt_secret.get_secret_value(),
        ).decode(),
        lambda s: jwt.encode(
            {"alg": "HS256"},
            {"iss": s.jwt_issuer, "aud": s.jwt_audience, "sub": "x", "role": "admin", "exp": int(time.time()) + 60},
            s.jwt_secret.get_secret_value(),
        ).decode(),
        lambda s: "not.a.jwt",
    ],
    ids=["expired", "wrong-key", "wrong-issuer", "unknown-role", "garbage"],
)
async def test_bad_development_tokens_are_401_in_dev(
    dev_client: httpx.AsyncClient, settings: Settings, token_for: Callable[[Settings], str]
) -> None:
    response = await dev_client.get("/api/peers", headers={"Authorization": f"Bearer {token_for(settings)}"})
    assert response.status_code == 401
    assert response.json()["resourceType"] == "OperationOutcome"


async def test_a_good_development_token_works_in_dev_only(
    client: httpx.AsyncClient, dev_client: httpx.AsyncClient, settings: Settings
) -> None:
    token = {"Authorization": f"Bearer {mint_token(settings, 'c', Role.COORDINATOR)}"}
    assert (await dev_client.get("/api/peers", headers=token)).status_code == 200
    refused = await client.get("/api/peers", headers=token)  # PEERWAY_ENV=test: no route takes an HS256 token
    assert refused.status_code == 401
    assert "PEERWAY_ENV=dev" in refused.json()["issue"][0]["diagnostics"]


def test_the_token_command_mints_a_token_the_dev_service_accepts(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "cli-secret-0123456789-0123456789-0123"
    monkeypatch.setenv("PEERWAY_JWT_SECRET", secret)
    monkeypatch.setenv("PEERWAY_ENV", "dev")
    assert cli_main(["token", "--role", "peer", "--sub", "peer-1"]) == 0
    token = capsys.readouterr().out.strip()
    caller = verify_token(Settings(jwt_secret=secret, _env_file=None), token)
    assert (caller.subject, caller.role) == ("peer-1", Role.PEER)
    with pytest.raises(Unauthorized):
        verify_token(Settings(jwt_secret="x" * 40, _env_file=None), token)


@pytest.mark.parametrize("env", ["test", "prod"])
def test_the_token_command_refuses_outside_dev(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, env: str
) -> None:
    monkeypatch.setenv("PEERWAY_ENV", env)
    monkeypatch.setenv("PEERWAY_METRICS_TOKEN", "m" * 40)
    assert cli_main(["token", "--role", "coordinator"]) == 2
    assert "PEERWAY_ENV=dev" in capsys.readouterr().err


def test_without_a_configured_secret_each_install_has_its_own(tmp_path: Path) -> None:
    first = Settings(env="dev", dev_secret_path=str(tmp_path / "a"), _env_file=None)
    second = Settings(env="dev", dev_secret_path=str(tmp_path / "b"), _env_file=None)
    token = mint_token(first, "c", Role.COORDINATOR)
    assert verify_token(first, token).role is Role.COORDINATOR
    with pytest.raises(Unauthorized):
        verify_token(second, token)
    assert (tmp_path / "a").stat().st_mode & 0o077 == 0  # readable by its owner only


async def test_unknown_routes_are_outcomes_too(client: httpx.AsyncClient, auth: Auth) -> None:
    response = await client.get("/fhir/Nothing/here", headers=auth(Role.COORDINATOR))
    assert response.status_code == 404
    assert response.json()["resourceType"] == "OperationOutcome"
