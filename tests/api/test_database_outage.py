"""A database that cannot serve is a 503 OperationOutcome with Retry-After on every route that needs it, never a
500; /healthz (liveness) still answers; /readyz answers only when the database does and its schema is this
release's, and says why not."""

from __future__ import annotations

import socket
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.engine import make_url

from service.auth import Role
from service.main import create_app
from service.settings import Settings
from service.store.migrate import script_heads
from tests.conftest import BACKEND

Auth = Callable[..., dict[str, str]]
FHIR_JSON = "application/fhir+json"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port  # closed again: nothing listens there


def unreachable(database_url: str, tmp_path: Path) -> str:
    """A database URL nothing answers at: PostgreSQL on a closed port, SQLite in a file it cannot open."""
    if BACKEND == "postgres":
        return make_url(database_url).set(host="127.0.0.1", port=closed_port()).render_as_string(False)
    return f"sqlite+aiosqlite:///{tmp_path}"  # a directory: "unable to open database file"


def admin_url(database_url: str) -> str:
    return make_url(database_url).set(drivername="postgresql", database="postgres").render_as_string(False)


async def serve(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://peerway.test") as client:
            yield client


@pytest.fixture
async def down(settings: Settings, database_url: str, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """The app, with its database unreachable."""
    async for client in serve(settings.model_copy(update={"database_url": unreachable(database_url, tmp_path)})):
        yield client


@pytest.fixture
async def never_migrated(settings: Settings, database_url: str, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """The app on an empty database (reachable, no tables)."""
    if BACKEND == "postgres":
        name = f"empty_{uuid.uuid4().hex[:12]}"
        conn = await asyncpg.connect(admin_url(database_url))
        await conn.execute(f'CREATE DATABASE "{name}"')
        await conn.close()
        url = make_url(database_url).set(database=name).render_as_string(False)
    else:
        url = f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
    async for client in serve(settings.model_copy(update={"database_url": url})):
        yield client
    if BACKEND == "postgres":
        conn = await asyncpg.connect(admin_url(database_url))
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()


def assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert int(response.headers["Retry-After"]) > 0
    assert response.headers["content-type"].startswith(FHIR_JSON)
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["code"] == "transient"


async def test_with_the_database_down_routes_answer_503_with_retry_after(down: httpx.AsyncClient, auth: Auth) -> None:
    coordinator = auth(Role.COORDINATOR, "coord")
    for path in ("/api/episodes", "/fhir/Consent/some-consent", "/api/peers"):
        assert_unavailable(await down.get(path, headers=coordinator))
    admit = await down.post("/fhir/$process-message", content=b"{}", headers=auth(Role.EHR_SYSTEM, "hospital"))
    assert_unavailable(admit)


async def test_with_the_database_down_the_process_is_live_but_not_ready(down: httpx.AsyncClient) -> None:
    live = await down.get("/healthz")
    assert live.status_code == 200
    assert live.json() == {"status": "ok"}
    ready = await down.get("/readyz")
    assert_unavailable(ready)
    assert ready.json()["issue"][0]["diagnostics"] == "the database does not answer"


async def test_ready_when_the_database_answers_at_this_releases_schema(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready"}


async def test_a_database_never_migrated_is_not_ready_and_says_so(never_migrated: httpx.AsyncClient) -> None:
    response = await never_migrated.get("/readyz")
    assert_unavailable(response)
    diagnostics = response.json()["issue"][0]["diagnostics"]
    assert "never migrated" in diagnostics
    assert "peerway migrate" in diagnostics
    assert (await never_migrated.get("/healthz")).status_code == 200


async def test_a_database_at_an_older_revision_is_not_ready_and_names_both(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    async with app.state.sessions() as session, session.begin():
        await session.execute(text("UPDATE alembic_version SET version_num = '0001'"))
    response = await client.get("/readyz")
    assert_unavailable(response)
    diagnostics = response.json()["issue"][0]["diagnostics"]
    assert "revision 0001;" in diagnostics
    assert all(head in diagnostics for head in script_heads())
