"""A read run on the driver's own connection (service/store/direct.py) returns what SQLAlchemy would — the same
rows, timestamps as aware datetimes — and fails as SQLAlchemy would, so a broken read is never a raw driver
error (a database that cannot serve must stay a 503, not a 500)."""

from __future__ import annotations

import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import bindparam, column, exc, insert, literal, select, table
from sqlalchemy.engine import make_url

from service.store.db import create_engine, is_outage, session_factory, transaction
from service.store.direct import DirectInsert, DirectRead
from service.store.models import AuditRecord, Client, ConsentDocument, table_of
from tests.conftest import BACKEND


async def test_the_rows_are_those_sqlalchemy_returns(database_url: str) -> None:
    engine = create_engine(database_url)
    sessions = session_factory(engine)
    created = datetime(2026, 3, 1, 12, 30, 15, 250000, tzinfo=UTC)
    try:
        async with transaction(sessions) as session:
            client = Client(
                id="c1", site="default", ehr_patient_id="p1", patient_json="{}", created_at=created, updated_at=created
            )
            session.add(client)
            await session.flush()
            await session.execute(
                insert(ConsentDocument).values(
                    id="k1",
                    client_id="c1",
                    status="active",
                    resource_json='{"a": 1}',
                    version_id=2,
                    created_at=created,
                    updated_at=created,
                )
            )
        statement = select(
            literal("c").label("kind"),
            ConsentDocument.id,
            ConsentDocument.resource_json,
            ConsentDocument.version_id,
            ConsentDocument.created_at,
        ).where(ConsentDocument.client_id == bindparam("client_id"))
        async with engine.connect() as connection:
            expected = [tuple(r) for r in (await connection.execute(statement, {"client_id": "c1"})).all()]
        read = DirectRead(statement)
        assert await read.rows(engine, {"client_id": "c1"}) == expected == [("c", "k1", '{"a": 1}', 2, created)]
        assert (await read.rows(engine, {"client_id": "c1"}))[0][4].tzinfo is not None
        assert await read.rows(engine, {"client_id": "nobody"}) == []
    finally:
        await engine.dispose()


async def test_a_failing_read_raises_sqlalchemys_error_and_the_pool_stays_usable(database_url: str) -> None:
    engine = create_engine(database_url)
    missing = DirectRead(select(table("no_such_table", column("x")).c.x).where(literal(1) == bindparam("one")))
    try:
        with pytest.raises(exc.DBAPIError) as raised:
            await missing.rows(engine, {"one": 1})
        assert not raised.value.connection_invalidated
        assert "no_such_table" in str(raised.value)
        present = DirectRead(select(literal(7).label("seven")).where(literal(1) == bindparam("one")))
        assert await present.rows(engine, {"one": 1}) == [(7,)]
    finally:
        await engine.dispose()


async def test_a_database_that_cannot_be_opened_is_an_outage(database_url: str, tmp_path: Path) -> None:
    if BACKEND == "postgres":
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            closed = s.getsockname()[1]
        url = make_url(database_url).set(host="127.0.0.1", port=closed).render_as_string(False)
    else:
        url = f"sqlite+aiosqlite:///{tmp_path}"  # a directory: SQLite cannot open it
    engine = create_engine(url)
    read = DirectRead(select(literal(7).label("seven")).where(literal(1) == bindparam("one")))
    try:
        with pytest.raises(exc.DBAPIError) as raised:
            await read.rows(engine, {"one": 1})
        assert is_outage(raised.value)
    finally:
        await engine.dispose()


async def test_rows_inserted_together_are_committed_all_or_none(database_url: str) -> None:
    engine = create_engine(database_url)
    sessions = session_factory(engine)
    audits = DirectInsert(table_of(AuditRecord))
    at = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)

    def row(audit_id: str) -> dict[str, Any]:
        return {"id": audit_id, "client_id": "c1", "actor": "Practitioner/p", "outcome": "0", "recorded_at": at}

    try:
        await audits.insert_many(engine, [row("a1") | {"resource_json": "{}"}, row("a2") | {"resource_json": "[]"}])
        with pytest.raises(exc.IntegrityError):  # a2 again: the batch fails as a whole
            await audits.insert_many(engine, [row("a3") | {"resource_json": "{}"}, row("a2") | {"resource_json": "{}"}])
        async with sessions() as session:
            stored = (await session.execute(select(AuditRecord).order_by(AuditRecord.id))).scalars().all()
        assert [(r.id, r.recorded_at, r.resource_json) for r in stored] == [("a1", at, "{}"), ("a2", at, "[]")]
    finally:
        await engine.dispose()


async def test_a_connection_returned_inside_a_transaction_is_rolled_back(database_url: str) -> None:
    """Only a connection that says it is clean skips the pool's rollback: one returned with a write under way (here
    begun on the driver itself on SQLite, which SQLAlchemy cannot know of) is rolled back, its write lost."""
    engine = create_engine(database_url)
    insert_one = (
        "INSERT INTO audit_event (id, client_id, actor, outcome, recorded_at, resource_json)"
        " VALUES ('x1', 'c1', 'Practitioner/p', '0', '2026-03-01 12:00:00', '{}')"
    )
    try:
        async with engine.connect() as connection:
            if BACKEND == "sqlite":
                driver: Any = (await connection.get_raw_connection()).driver_connection
                await driver.execute(insert_one)  # pysqlite opens the transaction implicitly
            else:
                await connection.exec_driver_sql(insert_one)
        async with engine.connect() as connection:
            count = (await connection.exec_driver_sql("SELECT count(*) FROM audit_event")).scalar()
        assert count == 0
        audits = DirectInsert(table_of(AuditRecord))
        row = {"id": "x2", "client_id": "c1", "actor": "P", "outcome": "0", "resource_json": "{}"}
        await audits.insert_many(engine, [row | {"recorded_at": datetime(2026, 3, 1, tzinfo=UTC)}])
        async with engine.connect() as connection:
            assert (await connection.exec_driver_sql("SELECT id FROM audit_event")).scalars().all() == ["x2"]
    finally:
        await engine.dispose()
