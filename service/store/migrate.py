"""Bring a database to the newest schema with Alembic (used by `peerway migrate`, `make run` and tests), and
tell whether it is there (readiness)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
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
    """
    command.upgrade(alembic_config(database_url), revision)


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
