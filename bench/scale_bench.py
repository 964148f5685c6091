"""Scaling out: `peerway serve --workers N` with 1, 2 and 4 API processes on one PostgreSQL, under the same load
(8 connections from the bench process, pinned to CPU 1), for intake and for the peer's summary read.

All three servers run at once against the same database; the windows rotate 1, 2, 4, 1, 2, 4, ... so drift
hits each alike. The servers are not pinned: N processes may use every CPU of the machine, which they share
with PostgreSQL and with the load itself. The ratios to one process are printed last.

    .venv/bin/python bench/scale_bench.py [--seconds 2] [--rounds 3] [--connections 8]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import uuid
from contextlib import ExitStack
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import load, servers
from bench.intake_bench import bearer, fresh_bundle, summary_setup, tokens
from service.auth import Role
from tests.support.postgres import throwaway_postgres

PROCESSES = (1, 2, 4)


async def measure(
    urls: dict[int, str], database_url: str, args: argparse.Namespace
) -> dict[str, dict[int, load.Samples]]:
    settings = tokens(database_url)
    run = uuid.uuid4().hex[:8]
    paths, _ = await summary_setup(urls[1], settings, run)
    ehr = bearer(settings, "hospital", Role.EHR_SYSTEM) | {"Content-Type": "application/fhir+json"}

    async def intake(client: httpx.AsyncClient, i: int) -> int:
        return (await client.post("/fhir/$process-message", content=fresh_bundle(run, i), headers=ehr)).status_code

    async def read_summary(client: httpx.AsyncClient, i: int) -> int:
        path, as_peer = paths[i % len(paths)]
        return (await client.get(path, headers=as_peer)).status_code

    counter = load.Counter()
    results: dict[str, dict[int, load.Samples]] = {}
    for label, send in (("intake", intake), ("summary read", read_summary)):
        samples = {n: load.Samples(f"{label}, {n} API process{'es' if n > 1 else ''}") for n in PROCESSES}
        for n in PROCESSES:
            for _ in range(4 * n):  # reach every process (the kernel hands connections out)
                await load.warm(urls[n], send, counter, requests=4)
        for _ in range(args.rounds):
            for n in PROCESSES:
                await load.window(
                    urls[n], send, samples[n], counter, connections=args.connections, seconds=args.seconds
                )
        print(f"{label}, postgres: {args.connections} connections, {args.rounds} rounds of {args.seconds:g} s each")
        for n in PROCESSES:
            print(samples[n].line(), flush=True)
        results[label] = samples
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=8)
    args = parser.parse_args()
    load.pin_to({servers.LOAD_CPU})
    with tempfile.TemporaryDirectory() as directory, throwaway_postgres() as database_url, ExitStack() as stack:
        urls = {}
        for n in PROCESSES:
            workdir = Path(directory) / f"p{n}"
            workdir.mkdir()
            urls[n] = stack.enter_context(servers.peerway(database_url, workdir, api_processes=n, cpus=None))
        results = asyncio.run(measure(urls, database_url, args))
    print("scaling (req/s with N API processes / req/s with 1, same run, rotated):")
    for label, samples in results.items():
        ratios = "   ".join(f"{n}: {samples[n].rate / samples[1].rate:.2f}" for n in PROCESSES)
        print(f"  {label:<14} {ratios}")


if __name__ == "__main__":
    main()
