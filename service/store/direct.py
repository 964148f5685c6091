"""A hot read run on the driver's own connection in one call: for the statements a request runs on every read.

Through SQLAlchemy's asyncio adapters one SELECT costs several trips: on SQLite each of cursor, execute, fetchall
and close is a hand-over to aiosqlite's thread and back (about 100 us of CPU each on a busy machine); on
PostgreSQL the adapter opens a transaction (BEGIN) before the statement and rolls it back after, two more round
trips for a read that needs no transaction. Here the statement is compiled once per dialect and run with
aiosqlite's execute_fetchall (one hand-over) or asyncpg's fetch (one round trip, asyncpg's own prepared statement
cache); the columns' result processors still apply, so the rows hold what SQLAlchemy would have returned.

Failures look like SQLAlchemy's own: a driver error becomes the DBAPIError SQLAlchemy would raise (so a database
that cannot serve is still a 503, service/app/health.py), and a connection the error broke is invalidated.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import exc
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.selectable import SelectBase

Processor = Callable[[Any], Any] | None


@dataclass(frozen=True)
class _Compiled:
    sql: str
    order: tuple[str, ...]  # the bound parameters' names, in the order the driver takes them
    fixed: Mapping[str, Any]  # values bound in the statement itself (literals)
    processors: tuple[Processor, ...]


class DirectRead:
    """A SELECT (or UNION) with named bound parameters, compiled on first use per dialect."""

    def __init__(self, statement: SelectBase) -> None:
        self.statement = statement
        self._compiled: dict[str, _Compiled] = {}

    def compiled(self, dialect: Dialect) -> _Compiled:
        found = self._compiled.get(dialect.name)
        if found is None:
            compiled = self.statement.compile(dialect=dialect)
            if "POSTCOMPILE" in compiled.string:
                raise ValueError("a direct read takes no expanding parameters")
            order = tuple(compiled.positiontup or ())
            processors = tuple(
                column.type._cached_result_processor(dialect, None) for column in self.statement.selected_columns
            )
            found = _Compiled(compiled.string, order, dict(compiled.params), processors)
            self._compiled[dialect.name] = found
        return found

    async def rows(self, engine: AsyncEngine, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """The statement's rows as tuples (each column converted as SQLAlchemy would), in one driver call."""
        compiled = self.compiled(engine.dialect)
        values = [params[name] if name in params else compiled.fixed[name] for name in compiled.order]
        async with engine.connect() as connection:
            raw = await connection.get_raw_connection()
            driver: Any = raw.driver_connection
            try:
                if engine.dialect.name == "sqlite":
                    fetched: Sequence[Sequence[Any]] = await driver.execute_fetchall(compiled.sql, values)
                else:
                    fetched = await driver.fetch(compiled.sql, *values)
            except Exception as error:
                translated = _translated(raw.dbapi_connection, error)
                adapted: Any = translated
                broken = isinstance(error, ConnectionError) or (
                    isinstance(adapted, engine.dialect.loaded_dbapi.Error)
                    and engine.dialect.is_disconnect(adapted, raw.dbapi_connection, None)
                )
                if broken:  # as SQLAlchemy does on a disconnect: this connection and every older one are replaced
                    pool = engine.sync_engine.pool
                    await connection.run_sync(lambda _: pool._invalidate(raw, translated))
                raise exc.DBAPIError.instance(
                    compiled.sql,
                    None,
                    translated,
                    engine.dialect.loaded_dbapi.Error,
                    hide_parameters=True,
                    connection_invalidated=broken,
                    dialect=engine.dialect,
                ) from error
        processors = compiled.processors
        return [tuple(p(v) if p is not None else v for p, v in zip(processors, row, strict=True)) for row in fetched]


def _translated(dbapi_connection: Any, error: Exception) -> BaseException:
    """The driver's error as the DBAPI error SQLAlchemy's adapter would raise (asyncpg's have their own types)."""
    try:
        dbapi_connection._handle_exception(error)
    except Exception as translated:
        return translated
    return error
