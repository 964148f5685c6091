"""Whether this process can serve, as operators and orchestrators ask it: liveness needs nothing; readiness needs
the database to answer and to be at the schema this release's migrations end at. Also which failures mean
"the database cannot serve now", so that every route answers those with 503 and Retry-After rather than 500."""

from __future__ import annotations

from sqlalchemy import text

from service.errors import ServiceUnavailable
from service.store.db import SessionFactory, is_outage
from service.store.migrate import database_heads, script_heads

RETRY_AFTER_SECONDS = 5


async def check_database(sessions: SessionFactory) -> None:
    """Raise ServiceUnavailable when the database does not answer a trivial query."""
    try:
        async with sessions() as session:
            await session.execute(text("SELECT 1"))
    except Exception as error:
        if is_outage(error):
            raise ServiceUnavailable("the database does not answer", retry_after_seconds=RETRY_AFTER_SECONDS) from None
        raise


async def check_readiness(sessions: SessionFactory) -> None:
    """Raise ServiceUnavailable naming the reason unless the database answers and its schema is at the head of
    this release's migrations (a database not yet migrated, or migrated by a newer release, is not ready)."""
    await check_database(sessions)
    try:
        async with sessions() as session:
            found = await database_heads(session)
    except Exception as error:
        if is_outage(error):
            raise ServiceUnavailable("the database does not answer", retry_after_seconds=RETRY_AFTER_SECONDS) from None
        raise
    expected = script_heads()
    if found != expected:
        at = ", ".join(sorted(found)) or "none (never migrated)"
        raise ServiceUnavailable(
            f"the database schema is at revision {at}; this release needs {', '.join(sorted(expected))}: "
            "run `peerway migrate`",
            retry_after_seconds=30,
        )


def database_outage(error: BaseException) -> ServiceUnavailable | None:
    """The 503 an error raised while serving a request stands for, when it says the database cannot serve now
    (unreachable, dropped, locked past the busy timeout, out of connections); None for any other error."""
    if is_outage(error):
        return ServiceUnavailable(
            "the database is unavailable; try again later", retry_after_seconds=RETRY_AFTER_SECONDS
        )
    return None
