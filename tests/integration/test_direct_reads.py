"""A read run on the driver's own connection (service/store/direct.py) returns what SQLAlchemy would — the same
rows, timestamps as aware datetimes — and fails as SQLAlchemy would, so a broken read is never a raw driver
error (a database that cannot serve must stay a 503, not a 500)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import bindparam, column, exc, insert, literal, select, table

from service.store.db import create_engine, session_factory, transaction
from service.store.direct import DirectRead
from service.store.models import Client, ConsentDocument


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
