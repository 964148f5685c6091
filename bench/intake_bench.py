"""Intake and the peer's summary read on a real `peerway serve` (pinned to CPU 0) under concurrent load from CPU 1,
each alternated A B A B with its baseline in the same run, on SQLite and on PostgreSQL.

- $process-message with a Da Vinci discharge Bundle, a new client and a new stay in every request (ids, MRN,
  SSN, stay identifier replaced), vs a bare endpoint that parses and validates the same Bundle with
  fhir.resources (bench/baseline_app.py, same uvicorn and h11).
- $peer-summary read by the assigned peer (consent decision, build, audit row) over 20 clients in turn, vs a bare
  endpoint answering stored JSON of the same size.
- then each target alone, open loop at 80 % of the peak it just showed: its p99 there.

    .venv/bin/python bench/intake_bench.py [--backends sqlite,postgres] [--seconds 2] [--pairs 3] [--connections 8]

The ratios (Peerway req/s / baseline req/s) are printed last.
"""

from __future__ import annotations

import argparse
import asyncio
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
        with servers.peerway(database_url, workdir) as peerway_url:
            paths, summary = await summary_setup(peerway_url, settings, run)
            (workdir / "summary.json").write_bytes(summary)
            ehr = bearer(settings, "hospital", Role.EHR_SYSTEM) | {"Content-Type": "application/fhir+json"}

            async def intake(client: httpx.AsyncClient, i: int) -> int:
                return (
                    await client.post("/fhir/$process-message", content=fresh_bundle(run, i), headers=ehr)
                ).status_code

            async def parse_only(client: httpx.AsyncClient, i: int) -> int:
                return (await client.post("/parse-only", content=fresh_bundle(run, i), headers=ehr)).status_code

            async def read_summary(client: httpx.AsyncClient, i: int) -> int:
                path, as_peer = paths[i % len(paths)]
                return (await client.get(path, headers=as_peer)).status_code

            async def stored_json(client: httpx.AsyncClient, _i: int) -> int:
                return (await client.get("/stored-json", headers=paths[0][1])).status_code

            with servers.baseline(workdir / "summary.json", workdir) as baseline_url:
                counter = load.Counter()
                warmups: list[tuple[str, load.Send]] = [
                    (peerway_url, intake),
                    (baseline_url, parse_only),
                    (peerway_url, read_summary),
                    (baseline_url, stored_json),
                ]
                for url, send in warmups:
                    await load.warm(url, send, counter)
                window = {"pairs": args.pairs, "connections": args.connections, "seconds": args.seconds}
                for label, target, base in (
                    (
                        f"intake, {backend}",
                        ("$process-message (Da Vinci, new client and stay)", peerway_url, intake),
                        ("baseline: bare endpoint validating the Bundle", baseline_url, parse_only),
                    ),
                    (
                        f"summary read, {backend}",
                        (f"$peer-summary ({len(summary)} B, {len(paths)} clients)", peerway_url, read_summary),
                        ("baseline: bare GET of stored JSON, same size", baseline_url, stored_json),
                    ),
                ):
                    a, b = await load.alternate(target, base, counter=counter, **window)
                    print(f"{label}: {args.connections} connections, {args.pairs} x A B of {args.seconds:g} s")
                    print(a.line())
                    print(b.line())
                    paced = load.Samples(f"{target[0]} at 80 % of peak ({0.8 * a.rate:.0f} req/s, open loop)")
                    await load.window(
                        peerway_url,
                        target[2],
                        paced,
                        counter,
                        connections=args.connections * 4,
                        seconds=args.seconds * 1.5,
                        rate=0.8 * a.rate,
                    )
                    print(paced.line(), flush=True)
                    results.append((label, a, b))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--seconds", type=float, default=2.0, help="length of each A or B window")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--connections", type=int, default=8)
    args = parser.parse_args()
    load.pin_to({servers.LOAD_CPU})
    results = []
    for backend in args.backends.split(","):
        results += asyncio.run(measure(backend, args))
    print("ratios (Peerway req/s / baseline req/s, same run, alternated):")
    for label, a, b in results:
        print(
            f"  {label:<24} {a.rate / b.rate:>6.3f}   ({a.rate:.0f} / {b.rate:.0f} req/s,"
            f" Peerway p99 {a.percentile(0.99):.1f} ms)"
        )


if __name__ == "__main__":
    main()
