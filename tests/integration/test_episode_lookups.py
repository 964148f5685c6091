"""Finding a client's current episode (every summary read, every hospital event) looks up the closures of that
client's own episodes by their key, whatever the number of episodes the program has closed.

It used to be `episode.id NOT IN (SELECT episode_id FROM episode_closure WHERE reason = ...)`, which read every
closure in the table on each call: with 50,000 closed episodes a summary read's statement took 9.4 ms on SQLite
and 8.2 ms on PostgreSQL instead of 26 us and 0.4 ms. The planners' own account of the statements is what is
checked here (a timing would be a figure for bench/, not a test).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, select

from service.domain.vocabulary import ADMISSION_CANCELLED
from service.store import repository
from service.store.db import create_engine, session_factory, transaction
from service.store.matching import EpisodeClosure, not_cancelled
from service.store.models import Client, Episode
from tests.conftest import BACKEND
from tests.support.plans import explain

CLOSED = 5000  # enough that PostgreSQL would not read a small table whole anyway
AT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def episode(episode_id: str, client_id: str) -> dict[str, Any]:
    return {
        "id": episode_id,
        "client_id": client_id,
        "ehr_encounter_id": episode_id,
        "state": "in-community",
        "encounter_json": "{}",
        "created_at": AT,
        "updated_at": AT,
    }


async def fill(database_url: str) -> None:
    """One client with an open episode; another whose CLOSED earlier stays all ended (a tenth cancelled)."""
    engine = create_engine(database_url)
    try:
        async with transaction(session_factory(engine)) as session:
            for client_id in ("current", "history"):
                session.add(
                    Client(
                        id=client_id,
                        site="default",
                        ehr_patient_id=client_id,
                        patient_json="{}",
                        created_at=AT,
                        updated_at=AT,
                    )
                )
            await session.flush()
            await session.execute(insert(Episode), [episode("open", "current")])
            await session.execute(insert(Episode), [episode(f"e{i}", "history") for i in range(CLOSED)])
            await session.execute(
                insert(EpisodeClosure),
                [
                    {
                        "episode_id": f"e{i}",
                        "ended_at": AT,
                        "reason": ADMISSION_CANCELLED if i % 10 == 0 else "completed",
                    }
                    for i in range(CLOSED)
                ],
            )
    finally:
        await engine.dispose()


def closures_read(explained: str) -> list[str]:
    """How the plan reads episode_closure, line by line."""
    return [line.strip() for line in explained.splitlines() if "episode_closure" in line]


def by_key_only(explained: str) -> bool:
    """Closures are read only through the table's key (not scanned, nor through an index built for the statement,
    which SQLite's AUTOMATIC index is: it reads the whole table each time too)."""
    read = closures_read(explained)
    if BACKEND == "postgres":
        return bool(read) and all("using episode_closure_pkey on episode_closure" in line for line in read)
    return bool(read) and all(
        line.startswith("SEARCH episode_closure USING") and "AUTOMATIC" not in line and "(episode_id=?)" in line
        for line in read
    )


async def test_a_summary_read_looks_up_only_its_own_episodes_closures(database_url: str) -> None:
    await fill(database_url)
    explained = await explain(database_url, repository._SUMMARY_ROWS, {"client_id": "current"})
    assert by_key_only(explained), explained


async def test_the_current_episode_query_looks_up_only_its_own_episodes_closures(database_url: str) -> None:
    await fill(database_url)
    query = (
        select(Episode.id)
        .where(Episode.client_id == "current", not_cancelled(Episode.id))
        .order_by(Episode.created_at.desc())
        .limit(1)
    )
    explained = await explain(database_url, query, {})
    assert by_key_only(explained), explained


async def test_of_two_episodes_created_at_one_instant_the_larger_id_is_current_in_every_look_up(
    database_url: str,
) -> None:
    # The consent review finds the current episode in the state it keeps (service/app/background.py), the other
    # paths in the database: on a tie all take the larger id, whichever was written first.
    engine = create_engine(database_url)
    try:
        sessions = session_factory(engine)
        async with transaction(sessions) as session:
            for client_id in ("za", "az"):
                session.add(
                    Client(
                        id=client_id,
                        site="default",
                        ehr_patient_id=client_id,
                        patient_json="{}",
                        created_at=AT,
                        updated_at=AT,
                    )
                )
            await session.flush()
            for first, second in (("a", "z"), ("z", "a")):
                client_id = first + second
                await session.execute(insert(Episode), [episode(f"{client_id}-{first}", client_id)])
                await session.execute(insert(Episode), [episode(f"{client_id}-{second}", client_id)])
        async with sessions() as session:
            for client_id in ("az", "za"):
                current = await repository.current_episode(session, client_id)
                assert current is not None
                assert current.id == f"{client_id}-z"
    finally:
        await engine.dispose()
