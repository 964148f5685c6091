"""Shared fixtures: a fresh database per test (SQLite, or PostgreSQL with PEERWAY_TEST_DB=postgres), the
app over ASGI with its lifespan, tokens per role, and the Node test EHR.

`make test` runs the suite once per backend; every test that touches storage therefore runs on both.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.engine import make_url

from service.auth.keys import load_or_create
from service.main import create_app
from service.settings import Settings
from service.store.migrate import upgrade
from tests.support.ehr import TestEhr, run_test_ehr
from tests.support.identity import TestIdentities
from tests.support.postgres import throwaway_postgres

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
TEST_SECRET = "test-secret-0123456789-0123456789-abcdef"
BACKEND = os.environ.get("PEERWAY_TEST_DB", "sqlite")
_counter = itertools.count()


def fixture_json(relative: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / relative).read_text())
    return data


def pytest_report_header() -> str:
    return f"peerway storage backend: {BACKEND}"


@pytest.fixture(scope="session")
def _template_database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A database migrated once; each test gets a copy of it."""
    if BACKEND == "postgres":
        with throwaway_postgres() as server_url:
            template = make_url(server_url).set(database="peerway_template")

            async def create() -> None:
                conn = await asyncpg.connect(make_url(server_url).set(drivername="postgresql").render_as_string(False))
                await conn.execute("CREATE DATABASE peerway_template")
                await conn.close()

            asyncio.run(create())
            upgrade(template.render_as_string(hide_password=False))
            yield server_url
    elif BACKEND == "sqlite":
        path = tmp_path_factory.mktemp("db") / "template.db"
        upgrade(f"sqlite+aiosqlite:///{path}")
        yield str(path)
    else:
        raise RuntimeError(f"unknown PEERWAY_TEST_DB {BACKEND!r}")


@pytest.fixture
async def database_url(_template_database: str, tmp_path: Path) -> AsyncIterator[str]:
    if BACKEND == "postgres":
        name = f"t{os.getpid()}_{next(_counter)}"
        admin = make_url(_template_database).set(drivername="postgresql").render_as_string(False)
        conn = await asyncpg.connect(admin)
        await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE peerway_template')
        await conn.close()
        yield make_url(_template_database).set(database=name).render_as_string(hide_password=False)
        conn = await asyncpg.connect(admin)
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()
    else:
        path = tmp_path / "peerway.db"
        shutil.copyfile(_template_database, path)
        yield f"sqlite+aiosqlite:///{path}"


@pytest.fixture(scope="session")
def auth_keys_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Peerway's token signing keys for the run (the tests sign EHR tokens with them, as /auth/token would)."""
    path = tmp_path_factory.mktemp("auth") / "auth-keys.json"
    load_or_create(path)
    return path


@pytest.fixture
def settings(database_url: str, auth_keys_path: Path) -> Settings:
    return Settings(
        env="test",
        database_url=database_url,
        jwt_secret=TEST_SECRET,
        run_worker=False,
        public_base_url="http://peerway.test",
        ehr_base_url="http://127.0.0.1:9/fhir",
        auth_keys_path=str(auth_keys_path),
        _env_file=None,
    )


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://peerway.test") as c:
        yield c


@pytest.fixture
def identities(settings: Settings, auth_keys_path: Path) -> TestIdentities:
    return TestIdentities(settings.database_url, settings.base_url, load_or_create(auth_keys_path))


@pytest.fixture
def auth(identities: TestIdentities) -> Callable[..., dict[str, str]]:
    """auth(Role.PEER, peer_id) -> headers with a bearer token for that caller; `site` for a coordinator or EHR
    of another site than "default", `org` for an organization-coordinator. Other keywords are extra headers.

    The token takes Peerway's real path: a person registered under a trusted issuer, or a registered EHR client
    holding a Peerway token (tests/support/identity.py)."""
    return identities.headers


@pytest.fixture(scope="session")
def _ehr_server() -> Iterator[TestEhr]:
    with run_test_ehr(profiles_dir=ROOT / "fhir_profiles" / "data") as server:
        yield server


@pytest.fixture
def ehr(_ehr_server: TestEhr) -> TestEhr:
    """The Node test EHR (Medplum's in-memory FHIR server), emptied for this test."""
    _ehr_server.reset()
    return _ehr_server


@pytest.fixture(scope="session")
def _ehr_server_b() -> Iterator[TestEhr]:
    """A second test EHR (another hospital's), for tests of several sites."""
    with run_test_ehr(profiles_dir=ROOT / "fhir_profiles" / "data") as server:
        yield server


@pytest.fixture
def ehr_b(_ehr_server_b: TestEhr) -> TestEhr:
    """The second test EHR, emptied for this test."""
    _ehr_server_b.reset()
    return _ehr_server_b
