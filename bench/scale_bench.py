"""Scaling out: `peerway serve --workers N` with 1, 2 and 4 API processes on one PostgreSQL, under the same load
(8 connections from the bench process, pinned to CPU 1), for intake and for the peer's summary read.

All three servers run at once against the same database; the windows rotate 1, 2, 4, 1, 2, 4, ... so drift
hits each alike. The ratios to one process are printed last.

What a 2-core machine can show, and how it is set up for that: the servers and PostgreSQL are not pinned (N API
processes may use both cores); the load is pinned to CPU 1 and costs about 0.05-0.15 ms of CPU per request
(bench/load.py), so it leaves most of CPU 1 to the servers. One API process can use at most one core; two can
use what is left of both once PostgreSQL and the load have theirs; four cannot use more than two. So the ratio
for 2 processes is bounded by roughly (2 - PostgreSQL's cores - the load's cores) / 1, and 4 processes can only
add contention (more processes than cores). Each line gives the cores each part kept busy over its windows
(API processes, PostgreSQL, the load) and the API's CPU per request: if that CPU per request stays flat as N
grows, nothing serialises the processes, and on a machine with more cores req/s would follow the cores given.
Other work on the machine takes cores too (the lines say how many): compare the lines of one run, not runs.

    .venv/bin/python bench/scale_bench.py [--seconds 1.5] [--rounds 3] [--connections 8]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import uuid
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import load, servers
from bench.intake_bench import bearer, fresh_bundle, summary_setup, tokens
from service.auth import Role
from tests.support.postgres import throwaway_postgres

PROCESSES = (1, 2, 4)


def cores(cpu_seconds: float, samples: load.Samples) -> str:
    return f"{cpu_seconds / samples.seconds:.2f}" if samples.seconds else "?"


async def measure(
    found: dict[int, servers.Server], database_url: str, args: argparse.Namespace
) -> dict[str, dict[int, load.Samples]]:
    settings = tokens(database_url)
    run = uuid.uuid4().hex[:8]
    paths, _ = await summary_setup(found[1].url, settings, run)
    ehr = bearer(settings, "hospital", Role.EHR_SYSTEM) | {"Content-Type": "application/fhir+json"}
    postgres = servers.postgres_pid(database_url)

    def intake(url: str) -> load.Make:
        return lambda i: load.request("POST", url, "/fhir/$process-message", ehr, fresh_bundle(run, i))

    def read_summary(url: str) -> load.Make:
        reads = [load.request("GET", url, path, as_peer) for path, as_peer in paths]
        return lambda i: reads[i % len(reads)]

    counter = load.Counter()
    results: dict[str, dict[int, load.Samples]] = {}
    for label, make in (("intake", intake), ("summary read", read_summary)):
        targets = {n: load.Target(label, found[n].url, make(found[n].url), found[n].pid) for n in PROCESSES}
        samples = {n: load.Samples(f"{label}, {n} API process{'es' if n > 1 else ''}") for n in PROCESSES}
        database_cpu = dict.fromkeys(PROCESSES, 0.0)
        machine_cpu = dict.fromkeys(PROCESSES, 0.0)
        for n in PROCESSES:  # 4 connections a process, opened at once: the kernel hands them to every process
            await load.warm(targets[n], counter, requests=8 * n, connections=4 * n)
        for _ in range(args.rounds):
            for n in PROCESSES:
                before = load.process_cpu_seconds(postgres) if postgres else 0.0
                machine_before = load.machine_cpu_seconds()
                await load.window(targets[n], samples[n], counter, connections=args.connections, seconds=args.seconds)
                database_cpu[n] += (load.process_cpu_seconds(postgres) if postgres else 0.0) - before
                machine_cpu[n] += load.machine_cpu_seconds() - machine_before
        print(f"{label}, postgres: {args.connections} connections, {args.rounds} rounds of {args.seconds:g} s each")
        for n in PROCESSES:
            s = samples[n]
            print(s.line())
            ours = (s.server_cpu or 0.0) + database_cpu[n] + s.load_cpu
            print(
                f"      cores busy: API processes {cores(s.server_cpu or 0.0, s)}, PostgreSQL"
                f" {cores(database_cpu[n], s) if postgres else '?'}, load {cores(s.load_cpu, s)},"
                f" other work on the machine {cores(max(0.0, machine_cpu[n] - ours), s)} (of {os.cpu_count()})",
                flush=True,
            )
        results[label] = samples
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=1.5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=8)
    args = parser.parse_args()
    # PostgreSQL is started before the load pins itself to its CPU, so that it may use every CPU (a child inherits
    # its parent's affinity); the API processes are given every CPU explicitly (servers.pinned).
    with tempfile.TemporaryDirectory() as directory, throwaway_postgres() as database_url, ExitStack() as stack:
        load.pin_to({servers.LOAD_CPU})
        found = {}
        for n in PROCESSES:  # side by side: their migrations take turns (service/store/migrate.py)
            workdir = Path(directory) / f"p{n}"
            workdir.mkdir()
            found[n] = stack.enter_context(
                servers.peerway_server(database_url, workdir, api_processes=n, cpus=None, wait=False)
            )
        for server in found.values():
            server.wait_until_up()
        results = load.run(measure(found, database_url, args))
    print(f"scaling (req/s with N API processes / req/s with 1, same run, rotated; {os.cpu_count()} cores):")
    for label, samples in results.items():
        ratios = "   ".join(f"{n}: {samples[n].rate / samples[1].rate:.2f}" for n in PROCESSES)
        print(f"  {label:<14} {ratios}")


if __name__ == "__main__":
    main()
