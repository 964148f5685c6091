"""A worker killed with -9 at random moments loses nothing and doubles nothing; one stopped with SIGTERM hands
its rows back at once; several at once never write the same contact twice."""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from service.settings import Settings
from tests.faults.support import (
    Outbox,
    WorkerProcess,
    contacts_at_the_ehr,
    record_contacts,
    report,
    wait_until,
    worker_env,
)
from tests.support.ehr import TestEhr

pytestmark = [pytest.mark.ehr, pytest.mark.faults]
Auth = Callable[..., dict[str, str]]

CONTACTS = 1000
KILLS = 6
# PostgreSQL: claims with FOR UPDATE SKIP LOCKED. SQLite takes one writer at a time: the same single-statement
# claims stay exclusive with four processes, which then queue for the write lock (correct, but no faster).
# One worker alone gives the throughput to compare with.


async def test_kill_9_at_random_moments_delivers_every_contact_exactly_once(
    app: FastAPI, client: httpx.AsyncClient, auth: Auth, settings: Settings, ehr: TestEhr, tmp_path: Path
) -> None:
    seed = int(os.environ.get("PEERWAY_FAULT_SEED", time.time_ns() % 1_000_000))
    rng = random.Random(seed)
    contacts = await record_contacts(app, client, auth, CONTACTS)
    kill_points = sorted(rng.sample(range(CONTACTS // 20, CONTACTS * 9 // 10), KILLS))
    env = worker_env(settings, ehr.base_url)
    outbox = Outbox(settings.database_url)
    started = time.monotonic()
    worker = WorkerProcess(env, tmp_path / "worker.log")
    killed: list[int] = []
    try:
        for point in kill_points:
            target = max(point, killed[-1] + 1 if killed else 0)  # the new worker is delivering, not starting
            await wait_until(
                lambda t=target: ehr.count("Encounter") >= t,  # type: ignore[misc]
                within=120,
                what=f"{target} contacts at the EHR",
                workers=[worker],
            )
            await asyncio.sleep(rng.uniform(0, 0.05))  # a random moment: claiming, writing, or recording
            worker.kill9()
            killed.append(ehr.count("Encounter"))
            worker = WorkerProcess(env, tmp_path / "worker.log")
        await wait_until(outbox.all_settled, within=180, what="every outbox row settled", workers=[worker])
        elapsed = time.monotonic() - started
        assert worker.stop() == 0
    finally:
        if worker.exit_code() is None:
            worker.stop()
        counts = await outbox.counts()
        await outbox.close()

    at_the_ehr = contacts_at_the_ehr(ehr)
    assert len(at_the_ehr) == CONTACTS  # nothing doubled
    assert set(at_the_ehr) == set(contacts)  # nothing lost
    assert ehr.count("Encounter") == CONTACTS
    assert counts == {"done": CONTACTS + 1}  # and the CareTeam
    puts = sum(1 for r in ehr.requests() if r["method"] == "PUT" and r["path"].startswith("/fhir/Encounter/"))
    assert len(killed) == KILLS
    report(
        f"kill -9 x{KILLS} (seed {seed}, at {killed} contacts delivered): {CONTACTS} contacts in {elapsed:.1f} s, "
        f"exactly {CONTACTS} Encounters; {puts - CONTACTS} redelivered PUTs absorbed by idempotency"
    )


async def test_sigterm_hands_the_rows_back_at_once(
    app: FastAPI, client: httpx.AsyncClient, auth: Auth, settings: Settings, ehr: TestEhr, tmp_path: Path
) -> None:
    contacts = await record_contacts(app, client, auth, 300)
    # A lease of 10 minutes: rows that were not handed back would sit out the rest of this test.
    env = worker_env(settings, ehr.base_url, outbox_lease_seconds=600)
    outbox = Outbox(settings.database_url)
    first = WorkerProcess(env, tmp_path / "first.log")
    try:
        await wait_until(lambda: ehr.count("Encounter") >= 50, within=60, what="50 contacts", workers=[first])
        first.sigterm()
        await wait_until(lambda: first.exit_code() is not None, within=30, what="the worker to exit", workers=[first])
        assert first.exit_code() == 0
        still_claimed = [r.id for r in await outbox.rows(status="pending") if r.claimed_until is not None]
        assert still_claimed == []
        assert (await outbox.counts()).get("pending", 0) > 0  # it stopped mid-run

        second = WorkerProcess(env, tmp_path / "second.log")
        await wait_until(outbox.all_settled, within=60, what="every row settled", workers=[second])
        assert second.stop() == 0
    finally:
        await outbox.close()
    assert sorted(contacts_at_the_ehr(ehr)) == sorted(contacts)


@pytest.mark.parametrize("workers", [1, 4])
async def test_concurrent_workers_never_write_a_contact_twice(
    app: FastAPI, client: httpx.AsyncClient, auth: Auth, settings: Settings, ehr: TestEhr, tmp_path: Path, workers: int
) -> None:
    contacts = await record_contacts(app, client, auth, CONTACTS)
    env = worker_env(settings, ehr.base_url, outbox_lease_seconds=60)
    outbox = Outbox(settings.database_url)
    started = time.monotonic()
    running = [WorkerProcess(env, tmp_path / f"worker-{n}.log") for n in range(workers)]
    try:
        await wait_until(outbox.all_settled, within=180, what="every outbox row settled", workers=running)
        elapsed = time.monotonic() - started
        assert [w.stop() for w in running] == [0] * workers
    finally:
        for worker in running:
            if worker.exit_code() is None:
                worker.stop()
        await outbox.close()

    assert sorted(contacts_at_the_ehr(ehr)) == sorted(contacts)
    # Claims are exclusive: each contact was written once — not merely absorbed by idempotency.
    puts = [r["path"] for r in ehr.requests() if r["method"] == "PUT" and r["path"].startswith("/fhir/Encounter/")]
    assert len(puts) == len(set(puts)) == CONTACTS
    report(
        f"{workers} worker process(es): {CONTACTS} contacts in {elapsed:.1f} s "
        f"({CONTACTS / elapsed:.0f} deliveries/s incl. process start), each PUT exactly once"
    )
