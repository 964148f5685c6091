"""Migration 0016 (background fixes): what was read from the EHR under the old rules is deleted (it may hold what
the review found unsafe to show), the client's own answers stay."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import command

from service.store.db import create_engine
from service.store.migrate import alembic_config, upgrade
from service.store.models import UTCDateTime

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def _back_to_0015(database_url: str) -> None:
    command.downgrade(alembic_config(database_url), "0015_safety_net_fixes")


def _seed(connection: sa.Connection) -> None:
    client = sa.table(
        "client",
        *(sa.column(n) for n in ("id", "site", "ehr_patient_id", "patient_json")),
        *(sa.column(n, UTCDateTime()) for n in ("created_at", "updated_at")),
    )
    connection.execute(
        client.insert().values(
            id="c-1", site="default", ehr_patient_id="p-1", patient_json="{}", created_at=T0, updated_at=T0
        )
    )
    item = sa.table(
        "background_item",
        *(sa.column(n) for n in ("id", "client_id", "category", "source", "resource_json", "labels_json")),
        sa.column("fetched_at", UTCDateTime()),
    )
    for item_id, category, source in (
        ("i-1", "recovery-goals", "Condition/c-9"),  # a Condition a Goal search answered, filed as a goal
        ("i-2", "recovery-goals", "QuestionnaireResponse/q-1-recovery-goals"),
    ):
        connection.execute(
            item.insert().values(
                id=item_id,
                client_id="c-1",
                category=category,
                source=source,
                resource_json="{}",
                labels_json="[]",
                fetched_at=T0,
            )
        )
    fetch = sa.table(
        "background_fetch",
        *(sa.column(n) for n in ("client_id", "category", "status", "items")),
        *(sa.column(n, UTCDateTime()) for n in ("attempted_at", "succeeded_at")),
    )
    connection.execute(
        fetch.insert().values(
            client_id="c-1", category="recovery-goals", status="ok", items=1, attempted_at=T0, succeeded_at=T0
        )
    )


async def test_the_old_background_is_deleted_and_the_clients_own_answers_stay(database_url: str) -> None:
    await asyncio.to_thread(_back_to_0015, database_url)
    engine = create_engine(database_url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_seed)
        await engine.dispose()
        await asyncio.to_thread(upgrade, database_url, "heads")
        async with engine.connect() as connection:
            items = (await connection.execute(sa.text("SELECT source FROM background_item"))).scalars().all()
            fetches = (await connection.execute(sa.text("SELECT count(*) FROM background_fetch"))).scalar_one()
    finally:
        await engine.dispose()
    assert items == ["QuestionnaireResponse/q-1-recovery-goals"]
    assert fetches == 0
