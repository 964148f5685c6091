"""The servers a benchmark runs against, each a real process: `peerway serve` (one process or --workers N), the
bare baseline app under the same uvicorn, and a throwaway PostgreSQL (tests/support/postgres.py).

Servers are pinned to CPU 0 with taskset when the machine has two or more CPUs and taskset exists; the load
then runs on CPU 1 (load.pin_to). Unpinned (`cpus=None`), a server may use every CPU the bench could use when it
started: a child inherits its parent's affinity, so a server started after the bench pinned itself to the load's
CPU is given the others back explicitly (before 2026-12 the benches' servers silently shared the load's CPU)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx

ROOT = Path(__file__).resolve().parents[1]
SECRET = "bench-secret-0123456789-0123456789-abcdef"  # noqa: S105 - a throwaway server's
SERVER_CPU = 0
LOAD_CPU = 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# The CPUs this process may use as it starts, before load.pin_to narrows them to the load's.
MACHINE_CPUS = frozenset(os.sched_getaffinity(0))


def pinned(command: list[str], cpus: str | None) -> list[str]:
    """`command` run on `cpus` (taskset's list syntax), or on every CPU of MACHINE_CPUS when None."""
    if shutil.which("taskset") is None or len(MACHINE_CPUS) < 2:
        return command
    if cpus is None:
        if os.sched_getaffinity(0) == MACHINE_CPUS:
            return command
        cpus = ",".join(str(cpu) for cpu in sorted(MACHINE_CPUS))
    return ["taskset", "-c", cpus, *command]


def peerway_env(database_url: str, workdir: Path, port: int, **extra: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("PEERWAY_")}
    env |= {
        "PEERWAY_ENV": "dev",  # development tokens (HS256): the benches need no identity provider
        "PEERWAY_HOST": "127.0.0.1",
        "PEERWAY_PORT": str(port),
        "PEERWAY_PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
        "PEERWAY_DATABASE_URL": database_url,
        "PEERWAY_JWT_SECRET": SECRET,
        "PEERWAY_RUN_WORKER": "false",
        "PEERWAY_EHR_BASE_URL": "http://127.0.0.1:9/fhir",
        "PEERWAY_AUTH_KEYS_PATH": str(workdir / "auth-keys.json"),
        "PYTHONPATH": str(ROOT),
    }
    return env | extra


def postgres_pid(database_url: str) -> int | None:
    """The postmaster serving `database_url` on this machine (its backends are its children), if found."""
    port = str(urlsplit(database_url).port)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if args and args[0].endswith(b"postgres") and b"-p" in args and port.encode() in args:
            at = args.index(b"-p")
            if at + 1 < len(args) and args[at + 1] == port.encode():
                return int(entry.name)
    return None


def wait_until_up(process: subprocess.Popen[bytes], url: str, log: Path, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} stopped with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/healthz", timeout=2, trust_env=False).status_code == httpx.codes.OK:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"nothing answered at {url}:\n{log.read_text()[-3000:]}")


@contextmanager
def process(
    command: list[str], env: dict[str, str], log: Path, url: str, *, wait: bool = True
) -> Iterator[subprocess.Popen[bytes]]:
    """The process, up (answering /healthz) unless `wait` is false; stopped on leaving."""
    with log.open("ab") as out:
        proc = subprocess.Popen(command, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    try:
        if wait:
            wait_until_up(proc, url, log)
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@dataclass(frozen=True)
class Server:
    url: str
    process: subprocess.Popen[bytes]  # taskset execs the server: its pid is the server's
    log: Path

    @property
    def pid(self) -> int:
        """Whose CPU is the server's (with --workers, with its worker processes': load.process_cpu_seconds)."""
        return self.process.pid

    def wait_until_up(self) -> None:
        wait_until_up(self.process, self.url, self.log)


@contextmanager
def peerway_server(
    database_url: str,
    workdir: Path,
    *,
    api_processes: int | None = None,
    cpus: str | None = str(SERVER_CPU),
    wait: bool = True,
) -> Iterator[Server]:
    """`peerway serve` (migrating first); with `wait` false, not yet up (Server.wait_until_up)."""
    port = free_port()
    command = [sys.executable, "-m", "service.cli", "serve"]
    if api_processes is not None:
        command += ["--workers", str(api_processes)]
    url = f"http://127.0.0.1:{port}"
    env, log = peerway_env(database_url, workdir, port), workdir / "peerway.log"
    with process(pinned(command, cpus), env, log, url, wait=wait) as proc:
        yield Server(url, proc, log)


@contextmanager
def peerway(
    database_url: str, workdir: Path, *, api_processes: int | None = None, cpus: str | None = str(SERVER_CPU)
) -> Iterator[str]:
    """`peerway serve` (migrating first); yields its base URL."""
    with peerway_server(database_url, workdir, api_processes=api_processes, cpus=cpus) as server:
        yield server.url


@contextmanager
def baseline_server(
    stored_json: Path, workdir: Path, *, cpus: str | None = str(SERVER_CPU), database_url: str | None = None
) -> Iterator[Server]:
    """bench/baseline_app.py under uvicorn with h11, as `peerway serve` runs (no access log); `database_url`:
    Peerway's database, for its /audited-read floor."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "bench.baseline_app:app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--http",
        "h11",
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "BENCH_STORED_JSON": str(stored_json)}
    if database_url is not None:
        env["BENCH_DATABASE_URL"] = database_url
    url = f"http://127.0.0.1:{port}"
    log = workdir / "baseline.log"
    with process(pinned(command, cpus), env, log, url) as proc:
        yield Server(url, proc, log)


@contextmanager
def baseline(stored_json: Path, workdir: Path, *, cpus: str | None = str(SERVER_CPU)) -> Iterator[str]:
    """bench/baseline_app.py under uvicorn with h11, as `peerway serve` runs (no access log); yields its URL."""
    with baseline_server(stored_json, workdir, cpus=cpus) as server:
        yield server.url
