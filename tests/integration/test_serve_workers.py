"""`peerway serve --workers N`: N API processes answer on one port with the job worker in a process of its
own; SIGTERM stops them all cleanly, and a child that dies takes the group down with a failing status (so the
process manager running `serve` sees it and restarts it)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, TEST_SECRET
from tests.support.processes import port_open, wait_until_serving
from tests.support.server import free_port


@contextmanager
def serving(database_url: str, workdir: Path, api_processes: int) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    port = free_port()
    env = {name: value for name, value in os.environ.items() if not name.startswith("PEERWAY_")}
    env |= {
        "PEERWAY_ENV": "test",
        "PEERWAY_HOST": "127.0.0.1",
        "PEERWAY_PORT": str(port),
        "PEERWAY_DATABASE_URL": database_url,
        "PEERWAY_JWT_SECRET": TEST_SECRET,
        "PEERWAY_RUN_WORKER": "true",
        "PEERWAY_EHR_BASE_URL": "http://127.0.0.1:9/fhir",
        "PEERWAY_AUTH_KEYS_PATH": str(workdir / "auth-keys.json"),
        "PYTHONPATH": str(ROOT),
    }
    log = workdir / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "serve", "--workers", str(api_processes)],
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until_serving(process, f"http://127.0.0.1:{port}", log)
        yield process, port
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _children(log: str) -> dict[str, int]:
    line = next(line for line in log.splitlines() if "Processes:" in line)
    return {name: int(pid) for name, pid in re.findall(r"([\w-]+) \(pid (\d+)\)", line)}


def _worker_started(log_path: Path, timeout: float = 90.0) -> str:
    """The log once the worker process has said it started (it may come up after the API answers)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log = log_path.read_text()
        if re.search(r"peerway worker \d+: jobs", log):
            return log
        time.sleep(0.1)
    pytest.fail(f"the worker process never started:\n{log_path.read_text()}")


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_two_api_processes_and_a_worker_serve_and_stop_together(database_url: str, tmp_path: Path) -> None:
    with serving(database_url, tmp_path, 2) as (process, port):
        log = _worker_started(tmp_path / "serve.log")
        children = _children(log)
        assert set(children) == {"api-1", "api-2", "worker"}
        assert all(_alive(pid) for pid in children.values())
        # The jobs run in the worker process only, never inside an API process.
        assert re.findall(r"peerway worker (\d+): jobs", log) == [str(children["worker"])]
        for _ in range(8):  # each on a new connection: whichever process accepts it answers
            answer = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=10, trust_env=False)
            assert answer.json() == {"status": "ready"}

        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    assert not any(_alive(pid) for pid in children.values())
    assert not port_open(port)


def test_a_dead_api_process_stops_the_group_with_a_failing_status(database_url: str, tmp_path: Path) -> None:
    with serving(database_url, tmp_path, 2) as (process, port):
        children = _children((tmp_path / "serve.log").read_text())
        os.kill(children["api-1"], signal.SIGKILL)
        assert process.wait(timeout=60) == 1
    log = (tmp_path / "serve.log").read_text()
    assert "api-1 stopped (exit -9); stopping the others" in log, log
    assert not any(_alive(pid) for pid in children.values())
    assert not port_open(port)


@pytest.mark.parametrize("workers", ["0", "-2"])
def test_serve_refuses_fewer_than_one_process(workers: str) -> None:
    env = {name: value for name, value in os.environ.items() if not name.startswith("PEERWAY_")}
    env |= {"PEERWAY_ENV": "test", "PEERWAY_JWT_SECRET": TEST_SECRET, "PYTHONPATH": str(ROOT)}
    run = subprocess.run(
        [sys.executable, "-m", "service.cli", "serve", "--workers", workers],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2
    assert "serve --workers needs at least 1" in run.stderr
