"""Migration 0008 (jobs) on a database holding deliveries and intake work in every state: one table, no row lost,
each with its status, attempts, availability, lease and error; the worker then claims the moved intake work like
any job; and a downgrade gives intake_inbox its rows back."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import command

from service.store import claims
from service.store.db import create_engine, session_factory
from service.store.migrate import alembic_config, upgrade
from service.store.models import UTCDateTime

T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


# kind, subject, site, status, attempts, available_at, claimed_until, error, created, done, claimed_by, first failed
OUTBOX = [
    ("contact", "k-1", "default", "done", 1, at(0), None, None, at(0), at(1), None, None),
    ("careteam", "e-1", "default", "pending", 3, at(30), at(31), "EHR answered 503", at(0), None, "tok", at(2)),
    ("contact", "k-2", None, "dead", 1, at(5), None, "EHR answered 422", at(4), None, None, at(5)),
]
# kind, site, channel, event number, focus, since, status, attempts, available_at, claimed_until, error, created,
# done
INBOX = [
    ("fetch", "north", "ch-1", 7, "Encounter/s-7", None, "pending", 2, at(40), None, "EHR answered 503", at(10), None),
    ("patient", "north", "ch-1", None, "Patient/p-1", None, "done", 1, at(11), None, None, at(11), at(12)),
    ("search", "north", "ch-1", None, None, at(-60), "pending", 0, at(0), at(50), None, at(12), None),
    ("recover", "south", "ch-2", None, None, None, "dead", 50, at(20), None, "EHR unreachable", at(13), None),
    ("search", "south", None, None, None, at(-30), "pending", 0, at(14), None, None, at(14), None),
]
INBOX_COLUMNS = (
    "kind, site, channel_id, event_number, focus, since, status, attempts, available_at, claimed_until, last_error,"
    " created_at, done_at"
)


def _back_to_0007(database_url: str) -> None:
    config = alembic_config(database_url)
    command.downgrade(config, "base")
    command.upgrade(config, "0007_identity")


def _table(name: str, columns: str) -> sa.TableClause:
    """The table as a migration sees it, times bound as the service binds them (UTC, one storage format)."""
    names = [c.strip() for c in columns.split(",")]
    timed = {n for n in names if n.endswith(("_at", "_until")) or n == "since"}
    return sa.table(name, *(sa.column(n, UTCDateTime() if n in timed else None) for n in names))


OUTBOX_COLUMNS = (
    "kind, subject_id, site, status, attempts, available_at, claimed_until, last_error, created_at, done_at,"
    " claimed_by, first_failed_at"
)


def _seed(connection: sa.Connection) -> None:
    channels = _table(
        "subscription_channel",
        "id, site, subscription, created_by_peerway, created_at, highest_event, contiguous_through",
    )
    for channel, site in (("ch-1", "north"), ("ch-2", "south")):
        connection.execute(
            channels.insert().values(
                id=channel,
                site=site,
                subscription="Subscription/s",
                created_by_peerway=sa.false(),
                created_at=T0,
                highest_event=0,
                contiguous_through=0,
            )
        )
    outbox = _table("outbox", OUTBOX_COLUMNS)
    names = [c.strip() for c in OUTBOX_COLUMNS.split(",")]
    connection.execute(outbox.insert(), [dict(zip(names, row, strict=True)) for row in OUTBOX])
    inbox = _table("intake_inbox", INBOX_COLUMNS)
    names = [c.strip() for c in INBOX_COLUMNS.split(",")]
    connection.execute(inbox.insert(), [dict(zip(names, row, strict=True)) for row in INBOX])


def _read_jobs(connection: sa.Connection) -> tuple[list[tuple[object, ...]], set[str]]:
    rows = connection.execute(
        sa.text(
            "SELECT id, kind, subject_id, site, status, attempts, available_at, claimed_until, last_error, created_at,"
            " done_at, claimed_by, first_failed_at, channel_id, event_number, focus, since FROM outbox ORDER BY id"
        )
    )
    return [tuple(_utc(v) for v in r) for r in rows], set(sa.inspect(connection).get_table_names())


def _read_inbox(connection: sa.Connection) -> tuple[list[tuple[object, ...]], list[str]]:
    inbox = connection.execute(sa.text(f"SELECT {INBOX_COLUMNS} FROM intake_inbox ORDER BY id"))  # noqa: S608 - constants only
    kinds = connection.execute(sa.text("SELECT kind FROM outbox ORDER BY id"))
    return [tuple(_utc(v) for v in r) for r in inbox], [k for (k,) in kinds]


def _utc(value: object) -> object:
    if isinstance(value, str) and value[:4].isdigit() and value[4:5] == "-":
        value = datetime.fromisoformat(value)
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value


async def test_intake_work_moves_into_the_one_job_table_without_losing_a_row(database_url: str) -> None:
    await asyncio.to_thread(_back_to_0007, database_url)
    engine = create_engine(database_url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_seed)
        await engine.dispose()
        await asyncio.to_thread(upgrade, database_url)
        async with engine.connect() as connection:
            rows, tables = await connection.run_sync(_read_jobs)
        await engine.dispose()
        # The worker's claim takes the moved intake work like any job: what is due, unleased, one per subject.
        async with session_factory(engine).begin() as session:
            claimed = await claims.claim(
                session, "new-worker", at(45), at(46), 50, {"fetch", "patient", "search", "recover"}, skip_locked=False
            )
        await engine.dispose()
        await asyncio.to_thread(command.downgrade, alembic_config(database_url), "0007_identity")
        async with engine.connect() as connection:
            inbox, kinds_left = await connection.run_sync(_read_inbox)
    finally:
        await engine.dispose()

    assert "intake_inbox" not in tables
    deliveries, intake = rows[: len(OUTBOX)], rows[len(OUTBOX) :]
    # Deliveries keep their ids and every field; the new columns are empty.
    assert [r[0] for r in deliveries] == [1, 2, 3]
    assert [r[1:13] for r in deliveries] == list(OUTBOX)
    assert all(r[13:] == (None, None, None, None) for r in deliveries)
    # Each intake row follows, in its order, with everything it had; its subject is its focus, else its channel.
    assert [r[0] for r in intake] == [4, 5, 6, 7, 8]
    subjects = ["Encounter/s-7", "Patient/p-1", "ch-1", "ch-2", "south"]
    for found, seeded, subject in zip(intake, INBOX, subjects, strict=True):
        kind, site, channel, number, focus, since, status, attempts, available, leased, error, created, done = seeded
        assert found[1:11] == (kind, subject, site, status, attempts, available, leased, error, created, done)
        assert found[11] is None  # no claim token: a lease taken before this release simply runs out
        assert found[13:] == (channel, number, focus, since)
    # The retry horizon of work that already failed counts from its creation; the rest has none yet.
    assert [r[12] for r in intake] == [at(10), None, None, None, None]

    # Due and unleased at 9:45: the fetch (due 9:40) and the site-wide search; the other search's lease runs on.
    assert [(c.kind, c.subject_id, c.channel_id, c.focus) for c in claimed] == [
        ("fetch", "Encounter/s-7", "ch-1", "Encounter/s-7"),
        ("search", "south", None, None),
    ]
    assert [c.attempts for c in claimed] == [2, 0]

    # Down again: intake_inbox gets every intake row back as it was (the claim just taken is a lease, kept).
    assert kinds_left == ["contact", "careteam", "contact"]
    expected = [list(row) for row in INBOX]
    expected[0][9] = expected[4][9] = at(46)
    assert [list(r) for r in inbox] == expected
