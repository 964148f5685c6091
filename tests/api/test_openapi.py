"""The OpenAPI document says which operations need a token, so /docs offers Authorize and client generators send
it; and the operations it calls public really answer without one."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import FastAPI

PUBLIC_PREFIXES = ("/fhir/metadata", "/healthz", "/readyz", "/auth/", "/.well-known/", "/fhir/.well-known/")
CONFORMANCE = (
    "StructureDefinition",
    "CodeSystem",
    "ValueSet",
    "OperationDefinition",
    "SearchParameter",
    "Measure",
    "Questionnaire",
)


def operations(app: FastAPI) -> list[tuple[str, str, dict[str, Any]]]:
    paths: dict[str, dict[str, Any]] = app.openapi()["paths"]
    return [(path, method, operation) for path, methods in paths.items() for method, operation in methods.items()]


def is_public(path: str, method: str) -> bool:
    # Peerway's definitions are public; evaluating a Measure (the program's outcomes) is not.
    conformance = path.startswith("/fhir/") and path.split("/")[2] in CONFORMANCE and "$" not in path
    return path.startswith(PUBLIC_PREFIXES) or conformance or (path, method) == ("/cds-services", "get")


async def test_every_operation_but_the_public_ones_declares_the_bearer_token(app: FastAPI) -> None:
    schemes = app.openapi()["components"]["securitySchemes"]
    assert schemes["bearer"] == {"type": "http", "scheme": "bearer", "description": schemes["bearer"]["description"]}
    assert schemes["channelSecret"]["in"] == "header"
    for path, method, operation in operations(app):
        security = operation.get("security", [])
        if is_public(path, method):
            assert security == [], (method, path)
        elif path == "/fhir/subscription-notification":
            assert security == [{"channelSecret": []}, {"bearer": []}]
        else:
            assert security == [{"bearer": []}], (method, path)


async def test_what_the_document_calls_public_answers_without_a_token(app: FastAPI, client: httpx.AsyncClient) -> None:
    for path, method, _ in operations(app):
        if method == "get" and is_public(path, method) and "{" not in path:
            assert (await client.get(path)).status_code in (200, 503), path  # /readyz may say the DB is not ready
        if not is_public(path, method) and "{" not in path:
            response = await client.request(method.upper(), path)
            assert response.status_code == 401, (method, path, response.status_code)
