"""Server CPU per Da Vinci $process-message, and per bare validation of the same Bundle, on a real pinned server.

Every message is a new client and a new stay (fresh Bundle, MessageHeader, Patient and Encounter ids, MRN, SSN
and stay identifier). The figure is the server process's own CPU time (user + system, all its threads: aiosqlite
runs statements in one) over a burst from 8 connections, divided by the requests; unlike req/s it hardly moves
when other work shares the machine, so it is the figure to compare before and after a change on the intake path.
The baseline is bench/baseline_app.py's POST /parse-only (fhir.resources validating the same Bundle).

    .venv/bin/python bench/intake_cpu_bench.py [--backends sqlite,postgres] [--requests 1500]
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
from bench.intake_bench import database, fresh_bundle, tokens
from service.auth import Role, mint_token


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(utime, stime) of a process (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


async def burst(url: str, path: str, bodies: list[bytes], headers: dict[str, str], connections: int = 8) -> None:
    queue = iter(bodies)
    async with httpx.AsyncClient(base_url=url, trust_env=False, timeout=60) as client:

        async def one_connection() -> None:
            for body in queue:
                answer = await client.post(path, content=body, headers=headers)
                assert answer.status_code == httpx.codes.OK, answer.text

        await asyncio.gather(*(one_connection() for _ in range(connections)))


def per_request(pid: int, url: str, path: str, bodies: list[bytes], headers: dict[str, str]) -> tuple[float, float]:
    """(user, system) milliseconds of server CPU per request."""
    warm, timed = bodies[:200], bodies[200:]
    asyncio.run(burst(url, path, warm, headers))  # imports, compiled statements, pooled connections
    user, system = cpu_seconds(pid)
    asyncio.run(burst(url, path, timed, headers))
    after_user, after_system = cpu_seconds(pid)
    return (after_user - user) / len(timed) * 1000, (after_system - system) / len(timed) * 1000


def measure(backend: str, count: int) -> None:
    run = uuid.uuid4().hex[:8]
    bodies = [fresh_bundle(run, i) for i in range(count + 200)]
    with tempfile.TemporaryDirectory() as directory, database(backend, Path(directory)) as database_url:
        workdir = Path(directory)
        settings = tokens(database_url)
        ehr = {"Authorization": f"Bearer {mint_token(settings, 'hospital', Role.EHR_SYSTEM, ttl=3600)}"}
        ehr["Content-Type"] = "application/fhir+json"
        port = servers.free_port()
        url = f"http://127.0.0.1:{port}"
        command = servers.pinned([sys.executable, "-m", "service.cli", "serve"], str(servers.SERVER_CPU))
        env = servers.peerway_env(database_url, workdir, port)
        with servers.process(command, env, workdir / "peerway.log", url) as peerway:
            user, system = per_request(peerway.pid, url, "/fhir/$process-message", bodies, ehr)
        port = servers.free_port()
        url = f"http://127.0.0.1:{port}"
        command = [sys.executable, "-m", "uvicorn", "bench.baseline_app:app", "--host", "127.0.0.1"]
        command += ["--port", str(port), "--http", "h11", "--no-access-log", "--log-level", "warning"]
        env = {**os.environ, "PYTHONPATH": str(servers.ROOT)}
        with servers.process(servers.pinned(command, str(servers.SERVER_CPU)), env, workdir / "b.log", url) as bare:
            base = sum(per_request(bare.pid, url, "/parse-only", bodies, ehr))
    target = user + system
    print(
        f"{backend}: $process-message {target:.2f} ms server CPU per message ({user:.2f} user, {system:.2f} system;"
        f" at most {1000 / target:.0f}/s on one core); bare validation of the Bundle {base:.2f} ms;"
        f" ratio {base / target:.3f} ({count} messages, 8 connections)",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--requests", type=int, default=1500)
    args = parser.parse_args()
    load.pin_to({servers.LOAD_CPU})
    for backend in args.backends.split(","):
        measure(backend, args.requests)


if __name__ == "__main__":
    main()
