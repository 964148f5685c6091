"""Whether this process can serve: the database answers (readiness), as operators and orchestrators ask it."""

from __future__ import annotations

from sqlalchemy import text

from service.store.db import SessionFactory


async def check_database(sessions: SessionFactory) -> None:
    """Raise when the database does not answer a trivial query."""
    async with sessions() as session:
        await session.execute(text("SELECT 1"))
