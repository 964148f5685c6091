"""The Alembic migrations build exactly the schema the models describe, and can be undone, on this backend."""

from __future__ import annotations

import asyncio
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from service.store.db import create_engine
from service.store.migrate import downgrade, upgrade
from service.store.schema import Base


def _differences(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


def _tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names()) - {"alembic_version"}


async def test_migrations_match_the_models_and_roll_back(database_url: str) -> None:
    # database_url is already at head (a copy of the migrated template).
    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            assert await connection.run_sync(_differences) == []
            assert await connection.run_sync(_tables) == set(Base.metadata.tables)
        await engine.dispose()
        await _in_thread(downgrade, database_url, "base")
        async with engine.connect() as connection:
            assert await connection.run_sync(_tables) == set()
        await engine.dispose()
        await _in_thread(upgrade, database_url, "heads")
        async with engine.connect() as connection:
            assert await connection.run_sync(_differences) == []
    finally:
        await engine.dispose()


async def _in_thread(function: Any, *args: str) -> None:
    """Alembic's env runs its own event loop, so it cannot run on this one."""
    await asyncio.to_thread(function, *args)
