"""What /docs shows a client developer: each operation described with who may call it and an example; every
documented error an OperationOutcome (what the error handlers really send); the FHIR writes with their body (the
profile named) whose example Peerway accepts as it stands; and Swagger's Authorize signing people in with PKCE
at their OpenID provider when one is configured."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

import fhir_profiles
from service.api import examples
from service.auth import Role
from service.main import create_app
from service.settings import Settings
from tests.api.test_openapi import operations
from tests.support.flow import register_peer

Auth = Callable[..., dict[str, str]]
FHIR_JSON = "application/fhir+json"


def _has_example(operation: dict[str, Any]) -> bool:
    bodies = operation.get("requestBody", {}).get("content", {}).values()
    answers = [c for s, r in operation["responses"].items() if s.startswith("2") for c in r.get("content", {}).values()]
    parameters = [p for p in operation.get("parameters", []) if p["in"] == "path"]
    return any("example" in c for c in [*bodies, *answers]) or (
        bool(parameters) and all("example" in p for p in parameters)
    )


async def test_every_operation_has_a_description_naming_its_callers_and_an_example(app: FastAPI) -> None:
    found = operations(app)
    assert len(found) > 60
    for path, method, operation in found:
        description = operation.get("description", "")
        assert "**Who may call:**" in description, (method, path)
        assert len(description) > len(operation["summary"]) + 20, (method, path)
        assert _has_example(operation), (method, path)
    contact = app.openapi()["paths"]["/fhir/Encounter"]["post"]["description"]
    assert "a peer (bearer token)" in contact
    assert "anyone (no token)" in app.openapi()["paths"]["/fhir/metadata"]["get"]["description"]


async def test_every_documented_error_is_an_operation_outcome(app: FastAPI) -> None:
    document = app.openapi()
    assert "HTTPValidationError" not in json.dumps(document)
    for path, method, operation in operations(app):
        for status, answer in operation["responses"].items():
            if not status.startswith("4") or path == "/auth/token":  # OAuth's own error shape, RFC 6749 5.2
                continue
            content = answer["content"]
            assert list(content) == [FHIR_JSON], (method, path, status)
            assert content[FHIR_JSON]["schema"] == {"$ref": "#/components/schemas/OperationOutcome"}
            assert content[FHIR_JSON]["example"]["resourceType"] == "OperationOutcome"
        if method in ("post", "put") and path != "/auth/token":
            assert {"413", "422"} <= set(operation["responses"]), (method, path)
        if "{" in path:
            assert "404" in operation["responses"], (method, path)


async def test_a_bad_query_answers_the_documented_400_not_a_422(
    app: FastAPI, client: httpx.AsyncClient, auth: Auth
) -> None:
    assert "422" not in app.openapi()["paths"]["/api/outbox/{item_id}"]["delete"]["responses"]
    answer = await client.delete("/api/outbox/not-a-number", headers=auth(Role.COORDINATOR))
    assert answer.status_code == 400
    assert answer.json()["resourceType"] == "OperationOutcome"


async def test_the_fhir_writes_show_their_body_and_what_docs_shows_is_accepted(
    app: FastAPI, client: httpx.AsyncClient, auth: Auth
) -> None:
    paths = app.openapi()["paths"]
    for path, method in [("/fhir/Encounter", "post"), ("/fhir/Consent", "post"), ("/fhir/$process-message", "post")]:
        body = paths[path][method]["requestBody"]
        assert body["required"] is True
        assert "example" in body["content"][FHIR_JSON]
    created = paths["/fhir/Encounter"]["post"]["responses"]["201"]
    assert {"Location", "ETag", "Warning"} <= set(created["headers"])
    assert "Prefer" in [p["name"] for p in paths["/fhir/Encounter"]["post"]["parameters"]]
    contact_body = paths["/fhir/Encounter"]["post"]["requestBody"]
    assert contact_body["content"][FHIR_JSON]["schema"]["externalDocs"]["url"] == fhir_profiles.PEER_CONTACT_PROFILE
    assert fhir_profiles.PEER_CONTACT_PROFILE in paths["/fhir/Encounter"]["post"]["description"]

    def example(path: str, client_id: str = examples.CLIENT) -> bytes:
        shown = paths[path]["post"]["requestBody"]["content"][FHIR_JSON]["example"]
        return json.dumps(shown).replace(examples.CLIENT, client_id).encode()

    fhir = {"Content-Type": FHIR_JSON}
    intake = await client.post(
        "/fhir/$process-message", content=example("/fhir/$process-message"), headers=auth(Role.EHR_SYSTEM, **fhir)
    )
    assert intake.status_code == 200, intake.text
    [episode] = (await client.get("/api/episodes", headers=auth(Role.COORDINATOR))).json()
    assert episode["state"] == "in-community"
    peer = await register_peer(client, auth)
    assigned = await client.put(
        f"/api/episodes/{episode['id']}/peer", json={"peer_id": peer["id"]}, headers=auth(Role.COORDINATOR)
    )
    assert assigned.status_code == 200, assigned.text
    consent = await client.post(
        "/fhir/Consent", content=example("/fhir/Consent", episode["client_id"]), headers=auth(Role.COORDINATOR, **fhir)
    )
    assert consent.status_code == 201, consent.text
    contact = await client.post(
        "/fhir/Encounter",
        content=example("/fhir/Encounter", episode["client_id"]),
        headers=auth(Role.PEER, peer["id"], **fhir),
    )
    assert contact.status_code == 201, contact.text


async def test_authorize_signs_people_in_at_their_openid_provider_with_pkce(tmp_path: Path) -> None:
    provider = "https://login.north.example/realms/staff/.well-known/openid-configuration"
    settings = Settings(
        env="test",
        database_url=f"sqlite+aiosqlite:///{tmp_path}/none.db",
        docs_openid_url=provider,
        docs_client_id="peerway-docs",
        _env_file=None,
    )
    app = create_app(settings)
    document = app.openapi()
    assert document["components"]["securitySchemes"]["openIdConnect"]["openIdConnectUrl"] == provider
    secured = [o for _, _, o in operations(app) if o.get("security")]
    assert secured
    for operation in secured:
        assert {"openIdConnect": ["openid"]} in operation["security"]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://peerway.test") as client:
        page = (await client.get("/docs")).text
    assert '"usePkceWithAuthorizationCodeGrant": true' in page
    assert '"clientId": "peerway-docs"' in page
