"""Starting and stopping the Node harnesses of the tests (the test EHR, the test OpenID provider).

Each harness prints one JSON line when it listens; this module starts it, waits for that line, keeps draining
its output (so a full pipe never blocks it) and stops it on exit. The harness-specific parts (which script,
which environment, what the first line means) stay in tests/support/ehr.py and tests/support/idp.py.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import threading
from collections import deque
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx

STARTUP_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 10.0
_STDERR_LINES_KEPT = 200


@dataclass(frozen=True)
class NodeHarness:
    """How to start one harness: ``label`` names it in errors ("test EHR"), ``error`` is the exception raised."""

    label: str
    script: Path
    install_hint: str
    error: type[RuntimeError]


@dataclass(frozen=True)
class Started:
    process: subprocess.Popen[str]
    first_line: dict[str, Any]
    stderr_tail: deque[str]


def raise_for_status(response: httpx.Response, harness: NodeHarness) -> None:
    if response.is_error:
        raise harness.error(
            f"{harness.label}: {response.request.method} {response.request.url} -> {response.status_code}: "
            f"{response.text[:2000]}"
        )


@contextmanager
def run_node(harness: NodeHarness, env: Mapping[str, str]) -> Iterator[Started]:
    """Start ``node <script>`` with ``env`` over the process environment; yield once it printed its first line."""
    node = shutil.which("node")
    if node is None:
        raise harness.error(f"{harness.label}: `node` (Node.js >= 20.19) is not on PATH")
    process = subprocess.Popen(
        [node, str(harness.script)],
        cwd=harness.script.parent,
        env={**os.environ, **env},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
    )
    assert process.stdout is not None
    assert process.stderr is not None
    first_line: queue.Queue[str] = queue.Queue(maxsize=1)
    stderr_tail: deque[str] = deque(maxlen=_STDERR_LINES_KEPT)
    readers = [
        threading.Thread(target=_pump_stdout, args=(process.stdout, first_line), daemon=True),
        threading.Thread(target=_pump_stderr, args=(process.stderr, stderr_tail), daemon=True),
    ]
    for reader in readers:
        reader.start()
    try:
        try:
            line = first_line.get(timeout=STARTUP_TIMEOUT_S)
        except queue.Empty:
            raise harness.error(
                f"{harness.label} did not report listening within {STARTUP_TIMEOUT_S:.0f} s; "
                f"stderr:\n{''.join(stderr_tail)}"
            ) from None
        if not line:
            process.wait(timeout=STOP_TIMEOUT_S)
            for reader in readers:
                reader.join(timeout=STOP_TIMEOUT_S)
            raise harness.error(
                f"{harness.label} exited with code {process.returncode} before listening "
                f"(if modules are missing, {harness.install_hint}); stderr:\n{''.join(stderr_tail)}"
            )
        try:
            started = json.loads(line)
            if not isinstance(started, dict):
                raise TypeError("not an object")
        except (ValueError, TypeError) as exc:
            raise harness.error(f"{harness.label} printed an unexpected first line: {line!r}") from exc
        yield Started(process, started, stderr_tail)
    finally:
        _stop(process)
        for reader in readers:
            reader.join(timeout=STOP_TIMEOUT_S)
        for stream in (process.stdout, process.stderr):
            with suppress(OSError):
                stream.close()


def _pump_stdout(stream: IO[str], first_line: queue.Queue[str]) -> None:
    """Hand the first line over, then keep draining so the server never blocks on a full pipe."""
    line = stream.readline()
    first_line.put(line)  # "" means EOF: the server exited before listening
    for _ in stream:
        pass


def _pump_stderr(stream: IO[str], tail: deque[str]) -> None:
    for line in stream:
        tail.append(line)


def _stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
