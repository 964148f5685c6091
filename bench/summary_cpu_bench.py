"""Server CPU per $peer-summary read, and per bare GET of stored JSON of the same size, on real pinned servers;
and, to tell what the store costs from what the request's handling costs, per "audited read floor": the bare
server reading the summary's rows with Peerway's one statement and committing one audit row with Peerway's group
commit before it answers the stored JSON (bench/baseline_app.py /audited-read: no token, consent, rendering,
middleware or access log); and the same statement without the audit row (/unaudited-read), to tell the audit's
share of that floor from the statement's.

The figure is the server process's own CPU time (user + system, all its threads: aiosqlite runs statements in
one) over a burst of requests from 8 connections, divided by the requests. Unlike req/s it hardly moves when
other work shares the machine, so it is the figure to compare before and after a change on the read path.
Both servers run at once (pinned to CPU 0, the load on CPU 1); the bursts alternate A B A B, and each side's
range over its bursts is printed with its pooled figure, the ratio last, then what the floor leaves of issue 18's
target (1,500 reads a second on one core: 0.67 ms of CPU a read).

    .venv/bin/python bench/summary_cpu_bench.py [--backends sqlite,postgres] [--requests 2000] [--pairs 3]
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import tempfile
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import load, servers
from bench.intake_bench import database, summary_setup, tokens

CONNECTIONS = 8
TARGET_PER_SECOND = 1500.0  # issue 18: summary reads on one core


def spread(bursts: list[load.Samples]) -> str:
    figures = sorted(s.server_ms_per_request() or float("nan") for s in bursts)
    return f"{figures[0]:.2f}-{figures[-1]:.2f}"


async def measure(backend: str, count: int, pairs: int) -> str:
    with tempfile.TemporaryDirectory() as directory, database(backend, Path(directory)) as database_url:
        workdir = Path(directory)
        with servers.peerway_server(database_url, workdir) as peerway:
            paths, summary = await summary_setup(peerway.url, tokens(database_url), uuid.uuid4().hex[:8])
            (workdir / "summary.json").write_bytes(summary)
            with servers.baseline_server(workdir / "summary.json", workdir, database_url=database_url) as bare:
                reads = [load.request("GET", peerway.url, path, as_peer) for path, as_peer in paths]
                stored = load.request("GET", bare.url, "/stored-json", paths[0][1])
                floors, statements = (
                    [
                        load.request("GET", bare.url, f"/{route}?client={path.split('/')[3]}&peer={peer_of(h)}", {})
                        for path, h in paths
                    ]
                    for route in ("audited-read", "unaudited-read")
                )
                target = load.Target("$peer-summary", peerway.url, lambda i: reads[i % len(reads)], peerway.pid)
                baseline = load.Target("bare GET of stored JSON", bare.url, lambda _i: stored, bare.pid)
                floor = load.Target("audited read floor", bare.url, lambda i: floors[i % len(floors)], bare.pid)
                statement = load.Target("unaudited read", bare.url, lambda i: statements[i % len(statements)], bare.pid)
                sides: list[tuple[load.Target, list[load.Samples]]] = [
                    (target, []),
                    (baseline, []),
                    (floor, []),
                    (statement, []),
                ]
                counter = load.Counter()
                for each, _ in sides:  # imports, compiled statements, parsed Consents
                    await load.warm(each, counter, requests=200, connections=CONNECTIONS)
                per_burst = count // pairs
                for _ in range(pairs):
                    for each, into in sides:
                        into.append(load.Samples(each.name))
                        await load.window(each, into[-1], counter, connections=CONNECTIONS, requests=per_burst)
                        if into[-1].failures:
                            raise RuntimeError(f"{each.name}: {into[-1].failures} failed {into[-1].statuses}")
    a, b, f, u = (into for _, into in sides)
    cpu_a, cpu_b, cpu_f, cpu_u = (
        sum(s.server_cpu or 0.0 for s in x) / sum(s.requests for s in x) * 1000 for x in (a, b, f, u)
    )
    budget = 1000 / TARGET_PER_SECOND
    return (
        f"{backend}: $peer-summary {cpu_a:.2f} ms server CPU per read ({spread(a)} over {pairs} bursts; at most"
        f" {1000 / cpu_a:.0f}/s on one core); bare GET of stored JSON {cpu_b:.2f} ms ({spread(b)}); audited read"
        f" floor {cpu_f:.2f} ms ({spread(f)}; at most {1000 / cpu_f:.0f}/s), of which the statement without the"
        f" audit row {cpu_u:.2f} ms ({spread(u)}); ratio {cpu_b / cpu_a:.3f}, floor's {cpu_b / cpu_f:.3f}"
        f" ({pairs} x A B F U of {per_burst} requests, {CONNECTIONS} connections)\n"
        f"  {TARGET_PER_SECOND:,.0f} reads/s on one core leave {budget:.2f} ms a read: the bare GET takes"
        f" {cpu_b / budget:.0%} of it, the statement (with its route's two query parameters)"
        f" {(cpu_u - cpu_b) / budget:.0%}, the audit row {(cpu_f - cpu_u) / budget:.0%}, Peerway's token, consent,"
        f" rendering and middleware"
        f" {(cpu_a - cpu_f) / budget:.0%}"
    )


def peer_of(headers: dict[str, str]) -> str:
    """The peer a bench token was minted for (its `sub`; the bench's own token, read without verifying it)."""
    payload = headers["Authorization"].removeprefix("Bearer ").split(".")[1]
    claims: dict[str, str] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return claims["sub"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--requests", type=int, default=2000, help="per side, over all its bursts")
    parser.add_argument("--pairs", type=int, default=3)
    args = parser.parse_args()
    load.pin_to({servers.LOAD_CPU})
    for backend in args.backends.split(","):
        print(load.run(measure(backend, args.requests, args.pairs)), flush=True)


if __name__ == "__main__":
    main()
