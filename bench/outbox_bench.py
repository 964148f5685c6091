"""Outbox drain: `peerway worker` processes (1, then 4, pinned to CPU 0) delivering recorded contacts as
Encounters to the test EHR (tests/ehr, pinned to CPU 1), alternated A B A B with a bare httpx client (also on
CPU 0, as many requests in flight as the workers allow: workers x PEERWAY_OUTBOX_CONCURRENCY) PUTting the same
Encounters, on SQLite and on PostgreSQL. The workers write in the default mode (PUT per Encounter), then one
worker in the batch write mode (each claimed batch's Encounters in one FHIR batch request, for EHRs that take
batches) against the same baseline: a bare client PUTting each Encounter, as the issue set it.

Every window delivers its own contacts (fresh Encounter ids): all are recorded first through the API with their
outbox rows held back (available_at in the future), and each A window makes one batch due at once, then waits
until the database says every row of it is done. On PostgreSQL that UPDATE wakes the workers when it commits
(LISTEN/NOTIFY, migration 0017), and they poll at the default 1 s, as deployed; on SQLite no wake crosses
processes, so workers there poll every 50 ms. During a B window the workers are stopped (SIGSTOP), so their idle
polls do not take CPU 0 from the baseline client.

Workers are measured from when their start-up is over (settled(): the first round of periodic checks and the
imports of a first use take some 300 ms of CPU per process, once per start, not per Encounter), and after one
window that is not measured (a warm-up: each process's first claims, statements compiled, EHR client and
connections made, some 75 ms of CPU per process; the baseline client's process is warm already).

Besides Encounters/s, each window's CPU per Encounter is measured: the workers' own (utime + stime of every
worker process, all threads, from /proc), the baseline client's (this process, during its window) and the
EHR's. That is the figure to compare on a shared machine; Encounters/s moves with whatever else runs.

What this 2-core machine can show. The EHR needs a core of its own (CPU 1) and the workers share CPU 0 with the
baseline client, so:
- worker / baseline is the drain's CPU cost per Encounter against a bare client's, as long as the EHR answers
  quickly: when both keep the EHR busy the ratio is near 1 whatever the worker costs, and when neither does, the
  side that spends more CPU on CPU 0 per request is the slower one;
- 4 workers / 1 worker can only exceed 1 when one worker is held back by something other than CPU (waiting
  for the EHR's answers with too few in flight, for its claims and commits, for the next poll). With the test
  EHR answering in a millisecond or two and all workers on one core, four processes split the same core and
  add their claims, commits and polls: a ratio near 1 means the single worker already kept the EHR busy; one
  well below 1 means the processes get in each other's way (SQLite's file lock across processes, where a
  waiting writer sleeps). More workers pay off when the EHR is slow to answer (a real EHR over a network: tens
  of milliseconds a write) and on more cores, which this machine cannot show.

    .venv/bin/python bench/outbox_bench.py [--backends sqlite,postgres] [--rows 80] [--pairs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import servers
from bench.intake_bench import CASELOAD, bearer, database, fresh_bundle, tokens
from bench.load import process_cpu_seconds
from service.auth import Role
from service.store.db import create_engine
from tests.support.ehr import run_test_ehr
from tests.support.flow import peer_contact

CLIENTS = 12
FAR = datetime(2999, 1, 1, tzinfo=UTC)


async def record_contacts(url: str, database_url: str, count: int) -> list[list[int]]:
    """`count` contacts through the API (12 clients, 4 peers); their outbox rows' ids, all held back."""
    settings = tokens(database_url)
    run = uuid.uuid4().hex[:8]
    ehr = bearer(settings, "hospital", Role.EHR_SYSTEM) | {"Content-Type": "application/fhir+json"}
    coordinator = bearer(settings, "coordinator", Role.COORDINATOR)
    async with httpx.AsyncClient(base_url=url, timeout=60, trust_env=False) as api:
        for i in range(CLIENTS):
            answer = await api.post("/fhir/$process-message", content=fresh_bundle(run, i), headers=ehr)
            assert answer.status_code == 200, answer.text
        owners: list[tuple[str, dict[str, str]]] = []
        for n, episode in enumerate((await api.get("/api/episodes", headers=coordinator)).json()):
            if n % CASELOAD == 0:
                peer = (await api.post("/api/peers", json={"name": f"Bench Peer {n}"}, headers=coordinator)).json()
            assigned = await api.put(
                f"/api/episodes/{episode['id']}/peer", json={"peer_id": peer["id"]}, headers=coordinator
            )
            assert assigned.status_code == 200, assigned.text
            owners.append((episode["client_id"], bearer(settings, peer["id"], Role.PEER)))
        gate = asyncio.Semaphore(8)
        start = datetime(2026, 1, 1, 8, tzinfo=UTC)

        async def one(k: int) -> None:
            client_id, as_peer = owners[k % len(owners)]
            begins = start + timedelta(hours=k)
            contact = peer_contact(client_id)
            contact["period"] = {"start": begins.isoformat(), "end": (begins + timedelta(minutes=60)).isoformat()}
            async with gate:
                posted = await api.post("/fhir/Encounter", json=contact, headers=as_peer)
            assert posted.status_code == 201, posted.text

        await asyncio.gather(*(one(k) for k in range(count)))
    engine = create_engine(database_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(text("UPDATE outbox SET available_at = :far WHERE kind = 'contact'"), {"far": FAR})
            ids = list(
                (await connection.execute(text("SELECT id FROM outbox WHERE kind = 'contact' ORDER BY id"))).scalars()
            )
        if engine.dialect.name == "postgresql":
            # The statistics a running database has (autovacuum keeps them): without them the planner takes the
            # just-filled table for empty and the claim's "no older pending row" check scans every pending row
            # for each candidate (7 ms a claim with 330 rows pending, 0.4 ms once analyzed).
            async with engine.begin() as connection:
                await connection.exec_driver_sql("ANALYZE")
    finally:
        await engine.dispose()
    return [ids]


async def forget_practitioners(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(text("DELETE FROM written_practitioner"))
    finally:
        await engine.dispose()


async def release_and_wait(database_url: str, batch: list[int]) -> float:
    """Make `batch` due now; seconds until every row of it is done (polled every 10 ms)."""
    engine = create_engine(database_url)
    marks = ",".join(str(i) for i in batch)
    try:
        async with engine.begin() as connection:
            started = time.perf_counter()
            await connection.execute(
                text(f"UPDATE outbox SET available_at = :now WHERE id IN ({marks})"),  # noqa: S608 - integers
                {"now": datetime.now(UTC) - timedelta(seconds=1)},
            )
        while True:
            async with engine.connect() as connection:
                left = (
                    await connection.execute(
                        text(f"SELECT count(*) FROM outbox WHERE id IN ({marks}) AND status != 'done'")  # noqa: S608
                    )
                ).scalar_one()
            if left == 0:
                return time.perf_counter() - started
            await asyncio.sleep(0.01)
    finally:
        await engine.dispose()


async def put_all(base_url: str, encounters: list[dict[str, object]], in_flight: int, tag: str) -> float:
    """The baseline: PUT each Encounter (a fresh id) with `in_flight` requests at a time; seconds taken."""
    gate = asyncio.Semaphore(in_flight)
    limits = httpx.Limits(max_connections=in_flight)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=60, trust_env=False) as http:

        async def one(k: int, encounter: dict[str, object]) -> None:
            fresh = {**encounter, "id": f"{tag}{k}"}
            async with gate:
                answer = await http.put(
                    f"/Encounter/{fresh['id']}",
                    content=json.dumps(fresh),
                    headers={"Content-Type": "application/fhir+json"},
                )
            assert answer.status_code in (200, 201), answer.text

        started = time.perf_counter()
        await asyncio.gather(*(one(k, e) for k, e in enumerate(encounters)))
        return time.perf_counter() - started


def start_workers(count: int, env: dict[str, str], log: Path) -> list[subprocess.Popen[bytes]]:
    command = servers.pinned([sys.executable, "-m", "service.cli", "worker"], str(servers.SERVER_CPU))
    out = log.open("ab")
    workers = [
        subprocess.Popen(command, env=env, cwd=servers.ROOT, stdout=out, stderr=subprocess.STDOUT) for _ in range(count)
    ]
    deadline = time.monotonic() + 120
    while sum(f"peerway worker {w.pid}: jobs" in log.read_text() for w in workers) < count:
        if time.monotonic() > deadline or any(w.poll() is not None for w in workers):
            raise RuntimeError(log.read_text()[-3000:])
        time.sleep(0.05)
    settled([w.pid for w in workers])
    return workers


def settled(pids: list[int], quiet: float = 0.02) -> None:
    """Wait until the workers' start-up is over: their first round of periodic checks (channels, safety net,
    background refresh) and what their first use imports. A worker runs for days; before, the first window of
    each configuration paid some 300 ms of CPU per process for it, a cost per start and not per Encounter (with
    4 workers, most of what the first window measured). Settled: under `quiet` CPU seconds per process in a
    quarter of a second (idle polls cost a few ms)."""
    deadline = time.monotonic() + 60
    cpu = cpu_of(pids)
    while time.monotonic() < deadline:
        time.sleep(0.25)
        now = cpu_of(pids)
        if now - cpu < quiet * len(pids):
            return
        cpu = now


def stop(workers: list[subprocess.Popen[bytes]]) -> None:
    for worker in workers:
        worker.terminate()
    for worker in workers:
        worker.wait(60)


def pause(workers: list[subprocess.Popen[bytes]], paused: bool) -> None:
    for worker in workers:
        worker.send_signal(signal.SIGSTOP if paused else signal.SIGCONT)


def cpu_of(processes: list[int]) -> float:
    return sum(process_cpu_seconds(pid) for pid in processes)


@dataclass
class Window:
    """What the windows of one side added up to: seconds, CPU seconds on CPU 0's side (workers, or the baseline
    client), CPU seconds of the EHR, and Encounters."""

    seconds: float = 0.0
    cpu: float = 0.0
    ehr_cpu: float = 0.0
    encounters: int = 0

    def rate(self) -> float:
        return self.encounters / self.seconds

    def per(self, cpu: float) -> float:
        return cpu * 1000 / self.encounters


@dataclass
class Result:
    label: str
    backend: str
    workers: int
    mode: str
    target: Window
    baseline: Window


# (worker processes, write mode): the deployed default, PUT per Encounter, with 1 and 4 workers; and the batch
# write mode (a claimed batch's Encounters in one FHIR batch request) with 1.
CONFIGS = ((1, "put"), (4, "put"), (1, "batch"))


def measure(backend: str, args: argparse.Namespace) -> list[Result]:
    results = []
    configs = CONFIGS
    with tempfile.TemporaryDirectory() as directory, database(backend, Path(directory)) as database_url:
        workdir = Path(directory)
        with run_test_ehr() as ehr:
            if len(os.sched_getaffinity(0)) > 1:
                subprocess.run(
                    ["taskset", "-a", "-p", "-c", str(servers.LOAD_CPU), str(ehr.process.pid)],
                    check=False,
                    capture_output=True,
                )
            with servers.peerway(database_url, workdir) as url:
                [ids] = asyncio.run(record_contacts(url, database_url, args.rows * (args.pairs + 1) * len(configs)))
            env = servers.peerway_env(database_url, workdir, servers.free_port()) | {
                "PEERWAY_EHR_BASE_URL": ehr.base_url,
                "PEERWAY_OUTBOX_POLL_SECONDS": "1" if backend == "postgres" else "0.05",
                "PEERWAY_OUTBOX_BATCH_SIZE": "20",
            }
            concurrency = 4  # PEERWAY_OUTBOX_CONCURRENCY's default
            batches = [ids[k : k + args.rows] for k in range(0, len(ids), args.rows)]
            serial = 0
            for count, mode in configs:
                ehr.reset()  # an EHR holding fewer Encounters for each configuration alike
                asyncio.run(forget_practitioners(database_url))  # so each writes its peers' Practitioners again
                workers = start_workers(count, env | {"PEERWAY_EHR_WRITE_MODE": mode}, workdir / f"workers-{count}.log")
                pids = [w.pid for w in workers]
                target, baseline = Window(), Window()
                try:
                    asyncio.run(release_and_wait(database_url, batches.pop(0)))  # warm-up, not measured
                    encounters: list[dict[str, object]] = []
                    for _ in range(args.pairs):
                        cpu, ehr_cpu = cpu_of(pids), process_cpu_seconds(ehr.process.pid)
                        target.seconds += asyncio.run(release_and_wait(database_url, batches.pop(0)))
                        target.cpu += cpu_of(pids) - cpu
                        target.ehr_cpu += process_cpu_seconds(ehr.process.pid) - ehr_cpu
                        target.encounters += args.rows
                        if not encounters:
                            encounters = ehr.search("Encounter", _count="1000")[: args.rows]
                        load_cpus = os.sched_getaffinity(0)
                        if len(load_cpus) > 1:
                            os.sched_setaffinity(0, {servers.SERVER_CPU})  # where the workers run
                        serial += 1
                        pause(workers, True)
                        try:
                            cpu, ehr_cpu = time.process_time(), process_cpu_seconds(ehr.process.pid)
                            baseline.seconds += asyncio.run(
                                put_all(ehr.base_url, encounters, count * concurrency, f"b{serial}x")
                            )
                            baseline.cpu += time.process_time() - cpu
                            baseline.ehr_cpu += process_cpu_seconds(ehr.process.pid) - ehr_cpu
                            baseline.encounters += len(encounters)
                        finally:
                            pause(workers, False)
                        os.sched_setaffinity(0, load_cpus)
                finally:
                    stop(workers)
                label = f"outbox drain, {count} worker{'s' if count > 1 else ''}, {mode}, {backend}"
                print(f"{label}: {args.pairs} x A B of {args.rows} Encounters")
                for name, side in (
                    (f"peerway worker x {count}", target),
                    (f"baseline: bare httpx, {count * concurrency} in flight", baseline),
                ):
                    print(
                        f"  {name:<44} {side.rate():>6.0f} Encounters/s   CPU {side.per(side.cpu):.2f} ms/Encounter"
                        f" (EHR {side.per(side.ehr_cpu):.2f})",
                        flush=True,
                    )
                results.append(Result(label, backend, count, mode, target, baseline))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--rows", type=int, default=80, help="Encounters per window")
    parser.add_argument("--pairs", type=int, default=3)
    args = parser.parse_args()
    os.sched_setaffinity(0, {servers.LOAD_CPU}) if len(os.sched_getaffinity(0)) > 1 else None
    results = []
    for backend in args.backends.split(","):
        results += measure(backend, args)
    print("ratios (Peerway / baseline, same run, alternated; CPU: ms per Encounter on CPU 0's side):")
    for r in results:
        a, b = r.target, r.baseline
        print(
            f"  {r.label:<42} {a.rate() / b.rate():>6.3f}   ({a.rate():.0f} / {b.rate():.0f} Encounters/s;"
            f" CPU {a.per(a.cpu):.2f} / {b.per(b.cpu):.2f} ms = {a.per(a.cpu) / b.per(b.cpu):.2f})"
        )
    for backend in dict.fromkeys(r.backend for r in results):
        rate = {r.workers: r.target.rate() for r in results if r.backend == backend and r.mode == "put"}
        if 1 in rate and 4 in rate:
            print(f"  4 workers / 1 worker, put, {backend:<15} {rate[4] / rate[1]:>6.3f}   (Encounters/s)")


if __name__ == "__main__":
    main()
