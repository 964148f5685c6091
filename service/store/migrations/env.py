"""Alembic environment: runs migrations over the async engine for SQLite and PostgreSQL alike."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from service.settings import Settings
from service.store.db import create_engine
from service.store.schema import Base

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    url = config.attributes.get("database_url") or config.get_main_option("sqlalchemy.url")
    return str(url) if url else Settings().database_url


# Any fixed number: the key of the PostgreSQL advisory lock every migrating process takes first ("peerway").
MIGRATION_LOCK = 0x70656572776179


def _run(connection: Connection) -> None:
    sqlite = connection.dialect.name == "sqlite"
    if connection.dialect.name == "postgresql":
        # Processes starting together on a fresh database (N API replicas, a worker, a migration Job) would each
        # create alembic_version and the same tables; one would die on a duplicate. The first to take this lock
        # migrates; the others wait here, then find the schema at head and do nothing. A transaction-scoped lock:
        # it is released by the commit that publishes the schema (in _run_async), or by a rollback.
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
    if sqlite:
        # SQLite changes a table by copying it and dropping the original ("batch" mode); with foreign keys
        # enforced, dropping a table other rows refer to (peer_supporter, client...) fails. Enforcement is off
        # while migrating (the pragma must precede the transaction), and the result is checked instead.
        connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=sqlite)
    with context.begin_transaction():
        context.run_migrations()
        if sqlite:
            broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
            if broken:
                raise RuntimeError(f"the migration left {len(broken)} rows whose foreign keys point nowhere")
    if sqlite:
        connection.exec_driver_sql("PRAGMA foreign_keys=ON")


async def _run_async() -> None:
    engine = create_engine(_url())
    async with engine.connect() as connection:
        await connection.run_sync(_run)
        await connection.commit()
    await engine.dispose()


if context.is_offline_mode():
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
    else:
        asyncio.run(_run_async())
