"""Server CPU per $peer-summary read, and per bare GET of stored JSON of the same size, on a real pinned server.

The figure is the server process's own CPU time (user + system, all its threads: aiosqlite runs statements in
one) over a burst of requests from 8 connections, divided by the requests. Unlike req/s it hardly moves when
other work shares the machine, so it is the figure to compare before and after a change on the read path.

    .venv/bin/python bench/summary_cpu_bench.py [--backends sqlite,postgres] [--requests 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import uuid
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import load, servers
from bench.intake_bench import database, summary_setup, tokens

Send = tuple[str, dict[str, str]]


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def burst(url: str, requests: list[Send], connections: int = 8) -> None:
    queue = iter(requests)
    async with httpx.AsyncClient(base_url=url, trust_env=False, timeout=60) as client:

        async def one_connection() -> None:
            for path, headers in queue:
                answer = await client.get(path, headers=headers)
                assert answer.status_code == httpx.codes.OK, answer.text

        await asyncio.gather(*(one_connection() for _ in range(connections)))


def per_request(pid: int, url: str, requests: list[Send]) -> float:
    asyncio.run(burst(url, requests[:200]))  # warm: imports, compiled statements, parsed Consents
    before = cpu_seconds(pid)
    asyncio.run(burst(url, requests))
    return (cpu_seconds(pid) - before) / len(requests) * 1000


def measure(backend: str, count: int) -> None:
    with tempfile.TemporaryDirectory() as directory, database(backend, Path(directory)) as database_url:
        workdir = Path(directory)
        port = servers.free_port()
        url = f"http://127.0.0.1:{port}"
        command = servers.pinned([sys.executable, "-m", "service.cli", "serve"], str(servers.SERVER_CPU))
        env = servers.peerway_env(database_url, workdir, port)
        with servers.process(command, env, workdir / "peerway.log", url) as peerway:
            paths, summary = asyncio.run(summary_setup(url, tokens(database_url), uuid.uuid4().hex[:8]))
            (workdir / "summary.json").write_bytes(summary)
            reads = [paths[i % len(paths)] for i in range(count)]
            target = per_request(peerway.pid, url, reads)
        port = servers.free_port()
        url = f"http://127.0.0.1:{port}"
        command = [sys.executable, "-m", "uvicorn", "bench.baseline_app:app", "--host", "127.0.0.1"]
        command += ["--port", str(port), "--http", "h11", "--no-access-log", "--log-level", "warning"]
        env = {**os.environ, "PYTHONPATH": str(servers.ROOT), "BENCH_STORED_JSON": str(workdir / "summary.json")}
        with servers.process(servers.pinned(command, str(servers.SERVER_CPU)), env, workdir / "b.log", url) as bare:
            base = per_request(bare.pid, url, [("/stored-json", paths[0][1])] * count)
    print(
        f"{backend}: $peer-summary {target:.2f} ms server CPU per read (at most {1000 / target:.0f}/s on one core);"
        f" bare GET of stored JSON {base:.2f} ms; ratio {base / target:.3f} ({count} requests, 8 connections)",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    load.pin_to({servers.LOAD_CPU})
    for backend in args.backends.split(","):
        measure(backend, args.requests)


if __name__ == "__main__":
    main()
