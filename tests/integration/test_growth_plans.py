"""Look-ups that must not read more the longer the program runs, checked by the planners' own account of them
(timings are figures for bench/ and the migration's notes, not tests): a claim of intake jobs does not walk the
jobs its channel has done; the safety net's "was this episode followed by a readmission" finds the later
episode by index rather than by reading the episode table once per episode; a channel's waiting and dead work
is counted without the work it has done; one client's desk page reads that episode's contacts, not every
contact's latest; a peer's home page and weeks read the episodes assigned to that peer, not every open one; a
page of the desk's ended episodes walks them in order instead of sorting every one the site has ended.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import insert

from service.store import alerts, claims, web
from service.store.channel import SubscriptionChannel
from service.store.db import create_engine, session_factory, transaction
from service.store.jobs import WORK_COUNTS, Job
from service.store.matching import EpisodeClosure
from service.store.models import Client, Contact, Episode, PeerSupporter
from tests.conftest import BACKEND
from tests.support.plans import explain

AT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
DONE_JOBS = 5000
EPISODES = 3000
PEERS = 60


async def fill_done_jobs(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        async with transaction(session_factory(engine)) as session:
            session.add(
                SubscriptionChannel(
                    id="channel-1",
                    site="default",
                    subscription="Subscription/1",
                    created_by_peerway=True,
                    created_at=AT,
                    highest_event=0,
                    contiguous_through=0,
                )
            )
            await session.flush()
            await session.execute(
                insert(Job),
                [
                    {
                        "kind": "search",
                        "subject_id": "channel-1",
                        "channel_id": "channel-1",
                        "status": "done" if i < DONE_JOBS else "pending",
                        "attempts": 1,
                        "available_at": AT,
                        "created_at": AT,
                        "payload_json": "{}",
                    }
                    for i in range(DONE_JOBS + 3)
                ],
            )
    finally:
        await engine.dispose()


async def fill_episodes(database_url: str, contacts_each: int = 0) -> None:
    """EPISODES episodes of one client, each the readmission after the one before, with `contacts_each` contacts."""
    engine = create_engine(database_url)
    try:
        async with transaction(session_factory(engine)) as session:
            session.add(
                Client(id="c", site="default", ehr_patient_id="c", patient_json="{}", created_at=AT, updated_at=AT)
            )
            for n in range(PEERS):
                session.add(
                    PeerSupporter(id=f"p{n}", name="Peer", status="active", organization_id="default", created_at=AT)
                )
            await session.flush()
            await session.execute(
                insert(Episode),
                [
                    {
                        "id": f"e{i}",
                        "client_id": "c",
                        "ehr_encounter_id": f"e{i}",
                        "state": "in-community",
                        "encounter_json": "{}",
                        "created_at": AT + timedelta(minutes=i),
                        "updated_at": AT,
                        "previous_episode_id": f"e{i - 1}" if i else None,
                        "peer_id": f"p{i % PEERS}",
                    }
                    for i in range(EPISODES)
                ],
            )
            if contacts_each:
                await session.execute(
                    insert(Contact),
                    [
                        {
                            "id": f"k{i}-{n}",
                            "episode_id": f"e{i}",
                            "peer_id": f"p{i % PEERS}",
                            "kind": "in-person",
                            "started_at": AT + timedelta(hours=n),
                            "minutes": 30,
                            "created_at": AT,
                            "updated_at": AT,
                        }
                        for i in range(EPISODES)
                        for n in range(contacts_each)
                    ],
                )
    finally:
        await engine.dispose()


async def test_a_claim_does_not_walk_the_jobs_its_channel_has_done(database_url: str) -> None:
    await fill_done_jobs(database_url)
    statement = claims._claim_statement(BACKEND == "postgres", ("fetch", "patient", "search", "recover"))
    params = {"now": AT + timedelta(minutes=1), "lease_until": AT + timedelta(minutes=2), "token": "t", "limit": 20}
    plan = await explain(database_url, statement, params)
    if BACKEND == "postgres":
        # PostgreSQL may read the older pending rows through either index; either way only pending ones.
        lines = plan.splitlines()
        [at] = [n for n, line in enumerate(lines) if " on outbox older" in line]
        assert "Index" in lines[at], plan
        assert "status" in lines[at + 1], plan
        assert "pending" in lines[at + 1], plan
    else:
        assert "SEARCH older USING INDEX ix_outbox_subject_pending (kind=? AND subject_id=? AND status=?" in plan, plan


async def test_whether_an_episode_was_followed_is_found_by_index(database_url: str) -> None:
    await fill_episodes(database_url)
    plan = await explain(database_url, alerts.episodes_query(open_at=AT + timedelta(days=400)), {})
    if BACKEND == "postgres":
        assert "ix_episode_previous" in plan or "Hash Anti Join" in plan, plan  # by index, or one pass
        assert "SubPlan" not in plan, plan
    else:
        assert "SEARCH later USING INDEX ix_episode_previous (previous_episode_id=?)" in plan, plan


async def test_a_channels_waiting_and_dead_work_is_counted_without_its_done_work(database_url: str) -> None:
    await fill_done_jobs(database_url)
    plan = await explain(database_url, WORK_COUNTS, {})
    if BACKEND == "postgres":
        assert "Seq Scan on outbox" not in plan, plan
        assert "ix_outbox_due" in plan, plan
    else:
        assert "SEARCH outbox USING INDEX ix_outbox_due (status=?)" in plan, plan


async def test_one_clients_desk_page_reads_only_that_episodes_contacts(database_url: str) -> None:
    await fill_episodes(database_url, contacts_each=3)
    plan = await explain(database_url, web.site_episodes_query("default", "e7"), {})
    if BACKEND == "postgres":
        assert "Seq Scan on contact" not in plan, plan
        assert "ix_contact_episode_id" in plan, plan
    else:
        assert "SEARCH contact USING INDEX ix_contact_episode_id (episode_id=?)" in plan, plan
        assert "SCAN contact" not in plan, plan


async def test_a_peers_own_screens_read_only_the_episodes_assigned_to_them(database_url: str) -> None:
    await fill_episodes(database_url)
    plan = await explain(database_url, alerts.episodes_query(open_at=AT + timedelta(days=400), peer_id="p7"), {})
    if BACKEND == "postgres":
        assert "ix_episode_peer" in plan, plan
    else:
        assert "SEARCH episode USING INDEX ix_episode_peer (peer_id=?)" in plan, plan


async def close_episodes(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        async with transaction(session_factory(engine)) as session:
            await session.execute(
                insert(EpisodeClosure),
                [
                    {"episode_id": f"e{i}", "ended_at": AT + timedelta(days=30, minutes=i), "reason": "completed"}
                    for i in range(EPISODES)
                ],
            )
    finally:
        await engine.dispose()


async def test_a_page_of_ended_episodes_is_walked_in_order_not_sorted(database_url: str) -> None:
    await fill_episodes(database_url)
    await close_episodes(database_url)
    for before in (None, (AT + timedelta(days=30, minutes=EPISODES // 2), f"e{EPISODES // 2}")):
        plan = await explain(database_url, web.ended_page_query("default", 50, before), {})
        if BACKEND == "postgres":
            assert "ix_episode_closure_ended" in plan, plan
            assert "Sort" not in plan, plan
        else:
            assert "episode_closure USING COVERING INDEX ix_episode_closure_ended" in plan, plan
            assert "TEMP B-TREE" not in plan, plan
