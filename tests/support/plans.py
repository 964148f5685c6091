"""The database planner's own account of a statement (EXPLAIN on PostgreSQL, EXPLAIN QUERY PLAN on SQLite), for
tests that a look-up does not read more the longer the program runs: timings are figures for bench/, a plan is
something a test can check."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event, text
from sqlalchemy.sql import Executable

from service.store.db import create_engine
from tests.conftest import BACKEND


async def explain(database_url: str, statement: Executable, params: dict[str, Any]) -> str:
    """The plan of `statement` as SQLAlchemy runs it, one line per plan line: it is run once (and rolled back) to
    capture the SQL and parameters the driver gets, then EXPLAINed with them. PostgreSQL is ANALYZEd first, as
    autovacuum keeps it; SQLite is not (Peerway never runs ANALYZE there)."""
    engine = create_engine(database_url)
    sent: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, sql: str, parameters: Any, _context: Any, _many: bool) -> None:
        sent.append((sql, parameters))

    try:
        async with engine.connect() as connection:
            if BACKEND == "postgres":
                await connection.execute(text("ANALYZE"))
                await connection.commit()
            event.listen(engine.sync_engine, "before_cursor_execute", capture)
            await connection.execute(statement, params)
            event.remove(engine.sync_engine, "before_cursor_execute", capture)
            await connection.rollback()
            [(sql, parameters)] = sent
            prefix = "EXPLAIN " if BACKEND == "postgres" else "EXPLAIN QUERY PLAN "
            rows = await connection.exec_driver_sql(prefix + sql, parameters)
            return "\n".join(str(row[-1]) for row in rows)
    finally:
        await engine.dispose()
