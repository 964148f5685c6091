"""Bring a database to the newest schema with Alembic (used by `peerway migrate`, `make run` and tests), and
tell whether it is there (readiness)."""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["database_url"] = database_url
    return config


def upgrade(database_url: str, revision: str = "heads") -> None:
    """Run every pending migration (synchronously; call it before the event loop serves requests).

    "heads": capabilities may add their migrations as branches off a common revision; all are applied.
    Safe to call from several processes at once: one migrates, the others wait and then find nothing to do
    (PostgreSQL: an advisory lock in migrations/env.py; SQLite: a lock file beside the database).
    """
    with _sqlite_migration_lock(database_url):
        command.upgrade(alembic_config(database_url), revision)


@contextmanager
def _sqlite_migration_lock(database_url: str) -> Iterator[None]:
    """An exclusive lock on `<database>.migrate-lock` while migrating a SQLite file. SQLite runs DDL outside
    the transaction the migration opens, so two processes could otherwise interleave their CREATE TABLEs."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        yield
        return
    lock_path = Path(f"{url.database}.migrate-lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also if this process dies
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def downgrade(database_url: str, revision: str) -> None:
    command.downgrade(alembic_config(database_url), revision)


@cache
def script_heads() -> frozenset[str]:
    """The revisions this release's migrations end at (read once: they do not change while it runs)."""
    return frozenset(ScriptDirectory.from_config(alembic_config("")).get_heads())


async def database_heads(session: AsyncSession) -> frozenset[str]:
    """The revisions the database says it is at (empty when it was never migrated)."""
    connection = await session.connection()
    heads = await connection.run_sync(lambda sync: MigrationContext.configure(sync).get_current_heads())
    return frozenset(heads)
