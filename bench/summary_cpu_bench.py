"""Server CPU per $peer-summary read, and per bare GET of stored JSON of the same size, on real pinned servers.

The figure is the server process's own CPU time (user + system, all its threads: aiosqlite runs statements in
one) over a burst of requests from 8 connections, divided by the requests. Unlike req/s it hardly moves when
other work shares the machine, so it is the figure to compare before and after a change on the read path.
Both servers run at once (pinned to CPU 0, the load on CPU 1); the bursts alternate A B A B, and each side's
range over its bursts is printed with its pooled figure, the ratio last.

    .venv/bin/python bench/summary_cpu_bench.py [--backends sqlite,postgres] [--requests 2000] [--pairs 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import load, servers
from bench.intake_bench import database, summary_setup, tokens

CONNECTIONS = 8


def spread(bursts: list[load.Samples]) -> str:
    figures = sorted(s.server_ms_per_request() or float("nan") for s in bursts)
    return f"{figures[0]:.2f}-{figures[-1]:.2f}"


async def measure(backend: str, count: int, pairs: int) -> str:
    with tempfile.TemporaryDirectory() as directory, database(backend, Path(directory)) as database_url:
        workdir = Path(directory)
        with servers.peerway_server(database_url, workdir) as peerway:
            paths, summary = await summary_setup(peerway.url, tokens(database_url), uuid.uuid4().hex[:8])
            (workdir / "summary.json").write_bytes(summary)
            with servers.baseline_server(workdir / "summary.json", workdir) as bare:
                reads = [load.request("GET", peerway.url, path, as_peer) for path, as_peer in paths]
                stored = load.request("GET", bare.url, "/stored-json", paths[0][1])
                target = load.Target("$peer-summary", peerway.url, lambda i: reads[i % len(reads)], peerway.pid)
                baseline = load.Target("bare GET of stored JSON", bare.url, lambda _i: stored, bare.pid)
                counter = load.Counter()
                for each in (target, baseline):  # imports, compiled statements, parsed Consents
                    await load.warm(each, counter, requests=200, connections=CONNECTIONS)
                a: list[load.Samples] = []
                b: list[load.Samples] = []
                per_burst = count // pairs
                for _ in range(pairs):
                    for each, into in ((target, a), (baseline, b)):
                        into.append(load.Samples(each.name))
                        await load.window(each, into[-1], counter, connections=CONNECTIONS, requests=per_burst)
                        if into[-1].failures:
                            raise RuntimeError(f"{each.name}: {into[-1].failures} failed {into[-1].statuses}")
    cpu_a = sum(s.server_cpu or 0.0 for s in a) / sum(s.requests for s in a) * 1000
    cpu_b = sum(s.server_cpu or 0.0 for s in b) / sum(s.requests for s in b) * 1000
    return (
        f"{backend}: $peer-summary {cpu_a:.2f} ms server CPU per read ({spread(a)} over {pairs} bursts; at most"
        f" {1000 / cpu_a:.0f}/s on one core); bare GET of stored JSON {cpu_b:.2f} ms ({spread(b)});"
        f" ratio {cpu_b / cpu_a:.3f} ({pairs} x A B of {per_burst} requests, {CONNECTIONS} connections)"
    )


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
