"""Migration 0020 on a database holding Consents recorded before it: every identifier of every Consent (not the
first only) becomes searchable, with "" for an identifier without a system; identifiers without a value, and
Consents without identifiers, add nothing."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import command

from service.store.db import create_engine
from service.store.migrate import alembic_config, upgrade

T0 = datetime(2026, 10, 1, 9, 0, tzinfo=UTC)
CONSENTS = {
    "default|k1": [{"system": "urn:a", "value": "one"}, {"system": "urn:b", "value": "two"}],
    "default|k2": [{"value": "plain"}, {"system": "urn:a"}, {"system": "urn:a", "value": "one"}],
    "default|k3": None,
}


def _back_to_0019(database_url: str) -> None:
    config = alembic_config(database_url)
    command.downgrade(config, "base")
    command.upgrade(config, "0019_closure_ended_index")


def _seed(connection: sa.Connection) -> None:
    connection.execute(
        sa.text(
            "INSERT INTO client (id, site, ehr_patient_id, patient_json, created_at, updated_at)"
            " VALUES ('c-1', 'default', 'p-1', '{}', :t, :t)"
        ),
        {"t": T0},
    )
    for key, identifiers in CONSENTS.items():
        resource: dict[str, object] = {"resourceType": "Consent", "id": key.split("|")[1], "status": "active"}
        if identifiers is not None:
            resource["identifier"] = identifiers
        connection.execute(
            sa.text(
                "INSERT INTO consent (id, client_id, status, version_id, resource_json, created_at, updated_at)"
                " VALUES (:k, 'c-1', 'active', 1, :j, :t, :t)"
            ),
            {"k": key, "j": json.dumps(resource), "t": T0},
        )


def _read(connection: sa.Connection) -> list[tuple[str, str, str]]:
    rows = connection.execute(
        sa.text("SELECT consent_id, system, value FROM consent_identifier ORDER BY consent_id, system, value")
    )
    return [(str(k), str(s), str(v)) for k, s, v in rows]


async def test_every_identifier_of_the_stored_consents_becomes_searchable(database_url: str) -> None:
    await asyncio.to_thread(_back_to_0019, database_url)
    engine = create_engine(database_url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_seed)
        await engine.dispose()
        await asyncio.to_thread(upgrade, database_url)
        async with engine.connect() as connection:
            found = await connection.run_sync(_read)
    finally:
        await engine.dispose()
    assert found == [
        ("default|k1", "urn:a", "one"),
        ("default|k1", "urn:b", "two"),
        ("default|k2", "", "plain"),
        ("default|k2", "urn:a", "one"),
    ]
