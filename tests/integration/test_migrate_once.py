"""Several processes starting together on a fresh database (API replicas, a worker, a migration Job) migrate it
once: every one of them succeeds and the schema ends at head, on this backend."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from service.store.db import create_engine
from service.store.migrate import script_heads
from tests.conftest import BACKEND, ROOT, TEST_SECRET

PROCESSES = 3


@pytest.fixture
async def fresh_url(_template_database: str, tmp_path: Path) -> AsyncIterator[str]:
    """A database nothing has migrated yet."""
    if BACKEND != "postgres":
        yield f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}"
        return
    admin = make_url(_template_database).set(drivername="postgresql").render_as_string(False)
    conn = await asyncpg.connect(admin)
    await conn.execute("CREATE DATABASE fresh_for_migrate_once")  # no template: empty
    await conn.close()
    yield make_url(_template_database).set(database="fresh_for_migrate_once").render_as_string(hide_password=False)
    conn = await asyncpg.connect(admin)
    await conn.execute("DROP DATABASE fresh_for_migrate_once WITH (FORCE)")
    await conn.close()


async def _schema(url: str) -> tuple[list[str], list[str]]:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            versions = (await connection.execute(text("SELECT version_num FROM alembic_version"))).scalars().all()
            tables = await connection.run_sync(lambda sync: sync.dialect.get_table_names(sync))
    finally:
        await engine.dispose()
    return list(versions), list(tables)


def test_processes_started_together_migrate_a_fresh_database_once(fresh_url: str) -> None:
    url = fresh_url
    env = {name: value for name, value in os.environ.items() if not name.startswith("PEERWAY_")}
    env |= {
        "PEERWAY_ENV": "test",
        "PEERWAY_DATABASE_URL": url,
        "PEERWAY_JWT_SECRET": TEST_SECRET,
        "PYTHONPATH": str(ROOT),
    }
    # All started before any is waited for: they import, connect and reach the schema at about the same moment.
    runs = [
        subprocess.Popen(
            [sys.executable, "-m", "service.cli", "migrate"],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(PROCESSES)
    ]
    outputs = [run.communicate(timeout=120)[0] for run in runs]
    for run, output in zip(runs, outputs, strict=True):
        assert run.returncode == 0, output
        assert f"database at schema {', '.join(sorted(script_heads()))}" in output

    versions, tables = asyncio.run(_schema(url))
    assert set(versions) == set(script_heads())
    assert len(versions) == len(script_heads())  # one row per head, not one per process
    assert {"client", "episode", "outbox"} <= set(tables)
