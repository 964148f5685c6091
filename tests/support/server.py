"""A real `peerway serve` in a subprocess on a free port, for tests of what only a real HTTP server shows:
header and connection limits, deadlines, its own logs and its memory (read from /proc)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import TEST_SECRET

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class LiveServer:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    def connect(self, timeout: float = 10.0) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=timeout)

    def memory_kib(self, field: str = "VmRSS") -> int:
        """The server's resident memory now (VmRSS) or at its peak so far (VmHWM), in KiB."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
        raise LookupError(field)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def get(self, path: str, headers: str = "") -> bytes:
        """One request on its own connection; the whole answer (the server closes: Connection: close)."""
        with self.connect() as conn:
            conn.sendall(f"GET {path} HTTP/1.1\r\nHost: peerway\r\nConnection: close\r\n{headers}\r\n".encode())
            return read_all(conn)


def read_all(conn: socket.socket) -> bytes:
    """Everything the server sends until it closes (a reset counts as closed)."""
    chunks = []
    with suppress(ConnectionResetError):
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@contextmanager
def live_server(workdir: Path, **settings: object) -> Iterator[LiveServer]:
    """`python -m service.cli serve` with PEERWAY_<NAME>=value for each keyword, on a fresh SQLite database in
    `workdir` (which serve migrates first); stopped with SIGTERM afterwards. A `port` keyword picks the port (for a
    base URL that must name it before the server starts)."""
    port = int(str(settings.pop("port"))) if "port" in settings else free_port()
    env = {name: value for name, value in os.environ.items() if not name.startswith("PEERWAY_")}
    env |= {
        "PEERWAY_ENV": "test",
        "PEERWAY_HOST": "127.0.0.1",
        "PEERWAY_PORT": str(port),
        "PEERWAY_DATABASE_URL": f"sqlite+aiosqlite:///{workdir / 'peerway.db'}",
        "PEERWAY_JWT_SECRET": TEST_SECRET,
        "PEERWAY_RUN_WORKER": "false",
        "PEERWAY_EHR_BASE_URL": "http://127.0.0.1:9/fhir",
        "PYTHONPATH": str(ROOT),
    }
    env |= {f"PEERWAY_{name.upper()}": str(value) for name, value in settings.items()}
    log_path = workdir / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "serve"], cwd=workdir, env=env, stdout=log, stderr=log
        )
    server = LiveServer(process, port, log_path)
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"peerway serve exited with {process.returncode}:\n{server.log()}")
            with suppress(OSError):
                if server.get("/healthz").startswith(b"HTTP/1.1 200"):
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"peerway serve did not answer within 60 s:\n{server.log()}")
            time.sleep(0.1)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
