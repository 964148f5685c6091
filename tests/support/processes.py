"""Waiting for a launched service to answer, and checking that it let go of its port (for tests that start
`make run-with-ehr`'s launcher or `make demo KEEP=1` as a user would)."""

from __future__ import annotations

import socket
import subprocess
import time
from contextlib import suppress
from pathlib import Path

import httpx
import pytest

START_TIMEOUT_S = 90.0


def wait_until_serving(process: subprocess.Popen[bytes], url: str, log: Path) -> None:
    """Poll `url`/healthz until the service answers (bounded; not a timing assertion)."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"{process.args!r} stopped with {process.returncode}:\n{log.read_text()}")
        with suppress(httpx.HTTPError):
            if httpx.get(f"{url}/healthz", timeout=2, trust_env=False).status_code == httpx.codes.OK:
                return
        time.sleep(0.1)
    pytest.fail(f"nothing answered at {url} within {START_TIMEOUT_S:.0f} s:\n{log.read_text()}")


def port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0
