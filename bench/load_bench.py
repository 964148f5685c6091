"""The load generator's own ceiling: the bare GET of stored JSON (bench/baseline_app.py, pinned to CPU 0) driven
from CPU 1 by bench/load.py and, alternated with it A B A B, by the httpx client the benches used before.

Each line gives req/s, the server's CPU per request and the load's: when the load's CPU per request is a small
fraction of the server's, the server is what is measured. A closed loop on 8 connections, then an open loop at
80 % of that peak, latency counted from when each request was due.

    .venv/bin/python bench/load_bench.py [--seconds 1] [--pairs 3] [--connections 8]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import load, servers

STORED = (
    b'{"resourceType": "Parameters", "parameter": [' + b'{"name": "x", "valueString": "0123456789"},' * 28 + b"{}]}"
)
HEADERS = {"Authorization": "Bearer " + "x" * 200}  # a token's size


async def httpx_window(target: load.Target, into: load.Samples, connections: int, seconds: float) -> None:
    """The benches' former load: httpx.AsyncClient, one coroutine per connection, closed loop."""
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(base_url=target.url, limits=limits, timeout=60, trust_env=False) as client:
        server_before = load.process_cpu_seconds(target.pid) if target.pid else 0.0
        load_before = load.own_cpu_seconds()
        start = time.perf_counter()
        end = start + seconds

        async def one_connection() -> None:
            while (sent := time.perf_counter()) < end:
                status = (await client.get("/stored-json", headers=HEADERS)).status_code
                if status == httpx.codes.OK:
                    into.latencies_ns.append(int((time.perf_counter() - sent) * 1e9))
                else:
                    into.failures += 1

        await asyncio.gather(*(one_connection() for _ in range(connections)))
        into.seconds += time.perf_counter() - start
        into.load_cpu += load.own_cpu_seconds() - load_before
        if target.pid:
            into.server_cpu = (into.server_cpu or 0.0) + load.process_cpu_seconds(target.pid) - server_before


async def measure(args: argparse.Namespace) -> tuple[load.Samples, load.Samples]:
    with tempfile.TemporaryDirectory() as directory:
        workdir = Path(directory)
        (workdir / "stored.json").write_bytes(STORED)
        with servers.baseline_server(workdir / "stored.json", workdir) as bare:
            raw = load.request("GET", bare.url, "/stored-json", HEADERS)
            target = load.Target("bench/load.py (raw HTTP/1.1 on uvloop)", bare.url, lambda _i: raw, bare.pid)
            counter = load.Counter()
            await load.warm(target, counter, requests=500, connections=args.connections)
            new, old = load.Samples(target.name), load.Samples("httpx.AsyncClient (the former load)")
            for _ in range(args.pairs):
                await load.window(target, new, counter, connections=args.connections, seconds=args.seconds)
                await httpx_window(target, old, args.connections, args.seconds)
            print(f"bare GET of stored JSON ({len(STORED)} B): {args.connections} connections, closed loop,")
            print(f"  {args.pairs} x A B of {args.seconds:g} s")
            print(new.line())
            print(old.line())
            rate = 0.8 * new.rate
            paced = load.Samples(f"bench/load.py, open loop at {rate:.0f}/s")
            await load.window(target, paced, counter, connections=4 * args.connections, seconds=args.seconds, rate=rate)
            print(paced.line(), flush=True)
    return new, old


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--connections", type=int, default=8)
    args = parser.parse_args()
    load.pin_to({servers.LOAD_CPU})
    new, old = load.run(measure(args))
    print("the load's ceiling (load CPU per request: at most 1 / that per second from one core):")
    for s in (new, old):
        per_request = s.load_cpu / s.requests
        print(f"  {s.name:<40} {per_request * 1000:.3f} ms/req -> at most {1 / per_request:,.0f} req/s")
    print(f"  bench/load.py / httpx req/s on the bare GET, same run: {new.rate / old.rate:.2f}")


if __name__ == "__main__":
    main()
