"""Migration 0005 (sites) on a database that already holds a single-hospital deployment's data: nothing lost."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import command

from service.store.db import create_engine
from service.store.migrate import alembic_config, upgrade

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
PATIENT = {
    "resourceType": "Patient",
    "id": "p-1",
    "identifier": [{"system": "https://health.example/phn", "value": " 9876543210 "}, {"value": "no-system"}],
}


def _downgrade_one(database_url: str) -> None:
    """Back to the schema of the single-site release: the three capability heads that 0005 merges."""
    config = alembic_config(database_url)
    command.downgrade(config, "base")
    for head in ("0002_delivery", "0003_intake", "0004_matching"):
        command.upgrade(config, head)


def _seed(connection: sa.Connection) -> None:
    clients = [
        {"id": "c-1", "site": "default", "ehr_patient_id": "p-1", "patient_json": json.dumps(PATIENT)},
        {"id": "c-2", "site": "east", "ehr_patient_id": "p-1", "patient_json": "{}"},
    ]
    for row in clients:
        connection.execute(
            sa.text(
                "INSERT INTO client (id, site, ehr_patient_id, patient_json, created_at, updated_at)"
                " VALUES (:id, :site, :ehr_patient_id, :patient_json, :now, :now)"
            ),
            {**row, "now": NOW},
        )
    connection.execute(
        sa.text("INSERT INTO peer_supporter (id, name, status, created_at) VALUES ('peer-1', 'Alex', 'active', :now)"),
        {"now": NOW},
    )
    connection.execute(
        sa.text(
            "INSERT INTO episode (id, client_id, ehr_encounter_id, state, encounter_json, created_at, updated_at)"
            " VALUES ('e-1', 'c-2', 'enc-1', 'in-community', '{}', :now, :now)"
        ),
        {"now": NOW},
    )
    connection.execute(
        sa.text(
            "INSERT INTO contact (id, episode_id, peer_id, kind, started_at, minutes, created_at)"
            " VALUES ('k-1', 'e-1', 'peer-1', 'phone-video', :now, 30, :now)"
        ),
        {"now": NOW},
    )
    for kind, subject in (("contact", "k-1"), ("careteam", "e-1"), ("careteam", "gone")):
        connection.execute(
            sa.text(
                "INSERT INTO outbox (kind, subject_id, status, attempts, available_at, created_at)"
                " VALUES (:kind, :subject, 'done', 1, :now, :now)"
            ),
            {"kind": kind, "subject": subject, "now": NOW},
        )
    connection.execute(
        sa.text(
            "INSERT INTO consent (id, client_id, status, version_id, resource_json, created_at, updated_at)"
            " VALUES ('consent-1', 'c-2', 'active', 1, '{}', :now, :now)"
        ),
        {"now": NOW},
    )
    connection.execute(
        sa.text(
            "INSERT INTO processed_message (site, bundle_id, event, response_status, response_body, received_at)"
            " VALUES ('west', 'b-1', 'notification-admit', 200, '{}', :now)"
        ),
        {"now": NOW},
    )


def _read(connection: sa.Connection) -> dict[str, object]:
    def rows(query: str) -> list[tuple[object, ...]]:
        return [tuple(r) for r in connection.execute(sa.text(query))]

    return {
        "sites": rows("SELECT id, status, fhir_base_url, write_mode FROM site ORDER BY id"),
        "organizations": rows("SELECT id FROM peer_organization"),
        "peers": rows("SELECT id, name, organization_id FROM peer_supporter"),
        "enabled": rows("SELECT peer_id, site_id FROM peer_site ORDER BY site_id"),
        "clients": rows("SELECT id, site, ehr_patient_id FROM client ORDER BY id"),
        "identifiers": rows("SELECT client_id, system FROM client_identifier"),
        "consents": rows("SELECT id, client_id FROM consent"),
        "outbox": rows("SELECT kind, subject_id, site FROM outbox ORDER BY id"),
    }


async def test_upgrading_a_single_site_database_keeps_every_client_peer_and_site(database_url: str) -> None:
    await asyncio.to_thread(_downgrade_one, database_url)
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

    # Every site name in use becomes a site whose connection is still the PEERWAY_EHR_* settings.
    assert found["sites"] == [(s, "active", None, "settings") for s in ("default", "east", "west")]
    assert found["organizations"] == [("default",)]
    assert found["peers"] == [("peer-1", "Alex", "default")]
    # The peer served every site before; they still do.
    assert found["enabled"] == [("peer-1", "default"), ("peer-1", "east"), ("peer-1", "west")]
    assert found["clients"] == [("c-1", "default", "p-1"), ("c-2", "east", "p-1")]
    assert found["identifiers"] == [("c-1", "https://health.example/phn")]
    assert found["consents"] == [("east|consent-1", "c-2")]  # Consent ids become their site's own
    # Outbox rows learn their client's site; a row whose subject is gone has none.
    assert found["outbox"] == [("contact", "k-1", "east"), ("careteam", "e-1", "east"), ("careteam", "gone", None)]
