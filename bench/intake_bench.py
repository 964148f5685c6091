"""Intake and the peer's summary read on a real `peerway serve` (pinned to CPU 0) under concurrent load from CPU 1
(bench/load.py: raw HTTP/1.1 on uvloop, about 0.05 ms of load CPU per request, so the load is not what is
measured), each alternated A B A B with its baseline in the same run, on SQLite and on PostgreSQL. Each line
gives req/s, p50/p99, and the server's own CPU per request (steadier than req/s on a shared machine).

- $process-message with a Da Vinci discharge Bundle, a new client and a new stay in every request (ids, MRN,
  SSN, stay identifier replaced), vs a bare endpoint that parses and validates the same Bundle with
  fhir.resources (bench/baseline_app.py, same uvicorn and h11).
- $peer-summary read by the assigned peer (consent decision, build, audit row) over 20 clients in turn, vs a bare
  endpoint answering stored JSON of the same size.
- then each target alone, open loop at 80 % of the peak it just showed: its p99 there; and the summary read at
  the issue's target rate (1,500 reads/s): requests the server could not take before the window ended are
  MISSED and count as slower than any answered one in p99.

    .venv/bin/python bench/intake_bench.py [--backends sqlite,postgres] [--seconds 1.5] [--pairs 3] [--connections 8]

On PostgreSQL the database runs on CPU 1 beside the load (a database is its own server in any deployment); its
CPU per Peerway request is printed with the ratios, since only Peerway's requests use it.

The ratios (Peerway req/s / baseline req/s) are printed last.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import load, servers
from service.auth import Role, mint_token
from service.settings import Settings
from tests.support.consents import peer_consent
from tests.support.postgres import throwaway_postgres

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = (ROOT / "tests/fixtures/davinci/davinci-alerts-discharge-notification-message-bundle-01.json").read_text()
# What makes a message, a client and a stay new: the Bundle, MessageHeader, Patient and Encounter ids (the
# Patient id is also its MRN), the stay identifier, and the identifiers a person could be linked by.
FRESH = {
    "discharge-notification-message-bundle-01": "b",
    "df0bb058-e0bb-11ea-a11a-864d2e68a322": "m",
    "06e1f0dd-5fbe-4480-9bb4-6b54ec02d31b": "p",
    "5fe62cd5-bfcf-4d3b-a1e9-80d6f75d6f82": "e",
    "Elden718Halvorson12420181021T2122150700": "s",
    "999-87-1037": "n",
    "S99952689": "d",
}
SUMMARY_CLIENTS = 18
CASELOAD = 3  # a peer's cap (matching's default)
SUMMARY_GOAL = 1500.0  # reads a second on one core, p99 <= 20 ms (issue 18)


def fresh_bundle(run: str, i: int) -> bytes:
    text = TEMPLATE
    for old, kind in FRESH.items():
        text = text.replace(old, f"{run}-{kind}{i}")
    return text.encode()


@contextmanager
def database(backend: str, workdir: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{workdir / 'peerway.db'}"
        return
    with throwaway_postgres() as url:
        yield url


def tokens(database_url: str) -> Settings:
    return Settings(env="dev", jwt_secret=servers.SECRET, database_url=database_url, _env_file=None)


def bearer(settings: Settings, subject: str, role: Role) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(settings, subject, role, ttl=3600)}"}


async def summary_setup(url: str, settings: Settings, run: str) -> tuple[list[tuple[str, dict[str, str]]], bytes]:
    """SUMMARY_CLIENTS clients discharged, each assigned to a peer (CASELOAD each) with the client's consent:
    (each summary's path with its peer's headers, one summary's bytes)."""
    ehr = bearer(settings, "hospital", Role.EHR_SYSTEM) | {"Content-Type": "application/fhir+json"}
    coordinator = bearer(settings, "coordinator", Role.COORDINATOR)
    async with httpx.AsyncClient(base_url=url, timeout=60, trust_env=False) as api:
        for i in range(SUMMARY_CLIENTS):
            answer = await api.post("/fhir/$process-message", content=fresh_bundle(f"{run}s", i), headers=ehr)
            assert answer.status_code == 200, answer.text
        episodes = (await api.get("/api/episodes", headers=coordinator)).json()
        paths = []
        for n, episode in enumerate(episodes):
            if n % CASELOAD == 0:
                peer = (await api.post("/api/peers", json={"name": f"Bench Peer {n}"}, headers=coordinator)).json()
                as_peer = bearer(settings, peer["id"], Role.PEER)
            assigned = await api.put(
                f"/api/episodes/{episode['id']}/peer", json={"peer_id": peer["id"]}, headers=coordinator
            )
            assert assigned.status_code == 200, assigned.text
            consent = peer_consent(episode["patient"], ["preferred-name", "admission-discharge"])
            stored = await api.post("/fhir/Consent", json=consent, headers=coordinator)
            assert stored.status_code == 201, stored.text
            paths.append((f"/fhir/Patient/{episode['client_id']}/$peer-summary", as_peer))
        summary = await api.get(paths[0][0], headers=paths[0][1])
        assert summary.status_code == 200, summary.text
    return paths, summary.content


async def measure(backend: str, args: argparse.Namespace) -> list[tuple[str, load.Samples, load.Samples]]:
    run = uuid.uuid4().hex[:8]
    results = []
    with tempfile.TemporaryDirectory() as directory, database(backend, Path(directory)) as database_url:
        workdir = Path(directory)
        settings = tokens(database_url)
        postgres = servers.postgres_pid(database_url) if backend == "postgres" else None
        if backend == "postgres" and postgres is None:
            print("(PostgreSQL's server process not found: its CPU is not measured)")
        with servers.peerway_server(database_url, workdir) as peerway:
            paths, summary = await summary_setup(peerway.url, settings, run)
            (workdir / "summary.json").write_bytes(summary)
            ehr = bearer(settings, "hospital", Role.EHR_SYSTEM) | {"Content-Type": "application/fhir+json"}
            with servers.baseline_server(workdir / "summary.json", workdir) as bare:
                reads = [load.request("GET", peerway.url, path, as_peer) for path, as_peer in paths]
                stored = load.request("GET", bare.url, "/stored-json", paths[0][1])
                intake = load.Target(
                    "$process-message (Da Vinci, new client and stay)",
                    peerway.url,
                    lambda i: load.request("POST", peerway.url, "/fhir/$process-message", ehr, fresh_bundle(run, i)),
                    peerway.pid,
                )
                parse_only = load.Target(
                    "baseline: bare endpoint validating the Bundle",
                    bare.url,
                    lambda i: load.request("POST", bare.url, "/parse-only", ehr, fresh_bundle(run, i)),
                    bare.pid,
                )
                read_summary = load.Target(
                    f"$peer-summary ({len(summary)} B, {len(paths)} clients)",
                    peerway.url,
                    lambda i: reads[i % len(reads)],
                    peerway.pid,
                )
                stored_json = load.Target(
                    "baseline: bare GET of stored JSON, same size", bare.url, lambda _i: stored, bare.pid
                )
                counter = load.Counter()
                for target, requests in ((intake, 30), (parse_only, 30), (read_summary, 100), (stored_json, 100)):
                    await load.warm(target, counter, requests)
                window_args = {"connections": args.connections, "seconds": args.seconds}
                for label, a_target, b_target, goal in (
                    (f"intake, {backend}", intake, parse_only, None),
                    (f"summary read, {backend}", read_summary, stored_json, SUMMARY_GOAL),
                ):
                    a, b = load.Samples(a_target.name), load.Samples(b_target.name)
                    for _ in range(args.pairs):  # A B A B, PostgreSQL's CPU counted over Peerway's windows
                        database_before = load.process_cpu_seconds(postgres) if postgres else 0.0
                        await load.window(a_target, a, counter, **window_args)
                        if postgres:
                            a.database_cpu = (
                                (a.database_cpu or 0.0) + load.process_cpu_seconds(postgres) - database_before
                            )
                        await load.window(b_target, b, counter, **window_args)
                    print(f"{label}: {args.connections} connections, {args.pairs} x A B of {args.seconds:g} s")
                    print(a.line())
                    print(b.line())
                    rates = [("80 % of its peak", 0.8 * a.rate)] + ([("the target's", goal)] if goal else [])
                    for what, rate in rates:
                        paced = load.Samples(f"{label}, open loop at {what} {rate:.0f}/s")
                        await load.window(
                            a_target,
                            paced,
                            counter,
                            connections=args.connections * 4,
                            seconds=args.seconds * 1.5,
                            rate=rate,
                        )
                        print(paced.line(), flush=True)
                    results.append((label, a, b))
    return results


def cpu(samples: load.Samples) -> str:
    per_request = samples.server_ms_per_request()
    return f"{per_request:.2f}" if per_request is not None else "?"


def database_cpu(samples: load.Samples) -> str:
    """PostgreSQL's CPU per Peerway request (it runs on the load's core, beside the server's), over Peerway's
    windows: its own housekeeping then (WAL writer, checkpoints, autovacuum) is counted too."""
    if samples.database_cpu is None or not samples.requests:
        return ""
    return f"; PostgreSQL {samples.database_cpu / samples.requests * 1000:.2f} ms CPU per request on the load's core"


def most(samples: load.Samples) -> str:
    """What one core could do at the server CPU per request measured: the figure to compare with the target."""
    per_request = samples.server_ms_per_request()
    return f", so at most {1000 / per_request:.0f}/s on one core" if per_request else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--seconds", type=float, default=1.5, help="length of each A or B window")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--connections", type=int, default=8)
    args = parser.parse_args()
    load.pin_to({servers.LOAD_CPU})
    results = []
    for backend in args.backends.split(","):
        results += load.run(measure(backend, args))
    print("ratios (Peerway req/s / baseline req/s, same run, alternated):")
    for label, a, b in results:
        print(
            f"  {label:<24} {a.rate / b.rate:>6.3f}   ({a.rate:.0f} / {b.rate:.0f} req/s,"
            f" Peerway p99 {a.percentile(0.99):.1f} ms; server CPU per request {cpu(a)} / {cpu(b)} ms{most(a)}"
            f"{database_cpu(a)})"
        )


if __name__ == "__main__":
    main()
