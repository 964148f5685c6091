"""Migration 0006 (assignments) on a database holding CareTeam periods and a matching history: one history, no
period lost, and the CareTeam the worker builds from it names the same peers with the same periods."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import command

from service.store.db import create_engine
from service.store.migrate import alembic_config, upgrade

T0 = datetime(2026, 10, 1, 9, 0, tzinfo=UTC)


def at(hours: int) -> datetime:
    return T0 + timedelta(hours=hours)


def _back_to_0005(database_url: str) -> None:
    config = alembic_config(database_url)
    command.downgrade(config, "base")
    command.upgrade(config, "0005_sites")


def _seed(connection: sa.Connection) -> None:
    def run(sql: str, **values: object) -> None:
        connection.execute(sa.text(sql), values)

    # Migration 0005 made organization "default".
    for peer in ("peer-a", "peer-b", "peer-c"):
        run(
            "INSERT INTO peer_supporter (id, name, status, created_at, organization_id)"
            " VALUES (:p, :p, 'active', :t, 'default')",
            p=peer,
            t=T0,
        )
    run(
        "INSERT INTO client (id, site, ehr_patient_id, patient_json, created_at, updated_at)"
        " VALUES ('c-1', 'default', 'p-1', '{}', :t, :t)",
        t=T0,
    )
    episodes = [
        # e-1: assigned by hand before the matching history existed (CareTeam periods only), then re-assigned.
        ("e-1", "enc-1", "peer-b", at(5)),
        # e-2: both histories hold the same period (kept since 0004).
        ("e-2", "enc-2", "peer-c", at(10)),
        # e-3: a peer on the episode row and nowhere else (assigned before either history).
        ("e-3", "enc-3", "peer-a", at(20)),
    ]
    for episode_id, encounter, peer, assigned in episodes:
        run(
            "INSERT INTO episode (id, client_id, ehr_encounter_id, state, encounter_json, peer_id, assigned_at,"
            " created_at, updated_at) VALUES (:e, 'c-1', :enc, 'in-community', '{}', :p, :a, :t, :t)",
            e=episode_id,
            enc=encounter,
            p=peer,
            a=assigned,
            t=T0,
        )
    for episode_id, peer, start, end in (
        ("e-1", "peer-a", at(1), at(5)),
        ("e-1", "peer-b", at(5), None),
        ("e-2", "peer-c", at(10), None),
    ):
        run(
            "INSERT INTO careteam_member (episode_id, peer_id, started_at, ended_at) VALUES (:e, :p, :s, :end)",
            e=episode_id,
            p=peer,
            s=start,
            end=end,
        )
    run(
        "INSERT INTO assignment (episode_id, peer_id, started_at, suggested, score, ended_at, end_kind)"
        " VALUES ('e-2', 'peer-c', :s, :yes, 7.5, NULL, NULL)",
        s=at(10),
        yes=True,
    )


def _read(connection: sa.Connection) -> tuple[list[tuple[object, ...]], bool]:
    rows = connection.execute(
        sa.text(
            "SELECT episode_id, peer_id, started_at, ended_at, suggested, score FROM assignment"
            " ORDER BY episode_id, started_at"
        )
    )
    tables = sa.inspect(connection).get_table_names()
    return [tuple(r) for r in rows], "careteam_member" in tables


def _utc(value: object) -> object:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value


async def test_careteam_periods_fold_into_the_assignment_history_without_losing_one(database_url: str) -> None:
    await asyncio.to_thread(_back_to_0005, database_url)
    engine = create_engine(database_url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_seed)
        await engine.dispose()
        await asyncio.to_thread(upgrade, database_url)
        async with engine.connect() as connection:
            rows, careteam_table_left = await connection.run_sync(_read)
    finally:
        await engine.dispose()

    found = [(e, p, _utc(s), _utc(end), bool(sug), score) for e, p, s, end, sug, score in rows]
    assert found == [
        ("e-1", "peer-a", at(1), at(5), False, None),  # a CareTeam period only: now in the history
        ("e-1", "peer-b", at(5), None, False, None),
        ("e-2", "peer-c", at(10), None, True, 7.5),  # held twice before: once now, the matching row kept
        ("e-3", "peer-a", at(20), None, False, None),  # only on the episode row: an open period from assigned_at
    ]
    assert not careteam_table_left
