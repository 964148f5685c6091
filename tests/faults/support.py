"""What the fault tests need: real `peerway worker` processes, an EHR link that can be cut (a TCP proxy),
contacts recorded through the app's own use case, bounded waiting, and the figures the run reports."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import IO, Any

from fastapi import FastAPI
from sqlalchemy import func, select

import fhir_profiles
from service.app.contacts import record_contact
from service.settings import Settings
from service.store.db import create_engine, session_factory
from service.store.jobs import Job
from tests.conftest import BACKEND
from tests.support.ehr import TestEhr
from tests.support.flow import Auth, discharged_client_with_peer, peer_contact

FIGURES: list[str] = []  # printed at the end of the run (tests/faults/conftest.py)
PEERWAY = shutil.which("peerway", path=str(Path(sys.executable).parent)) or "peerway"


def report(line: str) -> None:
    FIGURES.append(f"[{BACKEND}] {line}")


# --- worker processes --------------------------------------------------------------------------------------------


def worker_env(settings: Settings, ehr_base_url: str, **overrides: object) -> dict[str, str]:
    """The environment of a `peerway worker` on the test's database and EHR (short lease and backoff)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PEERWAY_")}
    env |= {
        "PEERWAY_ENV": "test",
        "PEERWAY_JWT_SECRET": settings.jwt_secret.get_secret_value(),
        "PEERWAY_DATABASE_URL": settings.database_url,
        "PEERWAY_EHR_BASE_URL": ehr_base_url,
        "PEERWAY_OUTBOX_POLL_SECONDS": "0.05",
        "PEERWAY_OUTBOX_LEASE_SECONDS": "2",
        "PEERWAY_OUTBOX_MAX_BACKOFF_SECONDS": "1",
        "PEERWAY_EHR_TIMEOUT_SECONDS": "5",
    }
    env |= {f"PEERWAY_{name.upper()}": str(value) for name, value in overrides.items()}
    return env


class WorkerProcess:
    """`peerway worker` as a real OS process, its output in a log file."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._log: IO[bytes] = log_path.open("ab")
        self.process = subprocess.Popen(
            [PEERWAY, "worker"],
            env=env,
            cwd=log_path.parent,  # no developer .env is read
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def kill9(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)
        self._log.close()

    def sigterm(self) -> None:
        self.process.send_signal(signal.SIGTERM)

    def exit_code(self) -> int | None:
        code = self.process.poll()
        if code is not None:
            self._log.close()
        return code

    def stop(self) -> int:
        """SIGTERM, then the exit code (bounded)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            code = -9
        self._log.close()
        return code

    def log_tail(self, lines: int = 40) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""


# --- waiting for conditions ----------------------------------------------------------------------------------------


async def wait_until(
    condition: Callable[[], Awaitable[bool] | bool],
    *,
    within: float,
    what: str,
    workers: list[WorkerProcess] | None = None,
    interval: float = 0.02,
) -> None:
    """Poll `condition` until it holds; fail (with the workers' logs) if it has not `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        result = condition()
        if isinstance(result, Awaitable):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- worker {w.pid}:\n{w.log_tail()}" for w in workers or [])
            raise AssertionError(f"waited {within:.0f} s for: {what}\n{logs}")
        await asyncio.sleep(interval)


class Outbox:
    """The test's own look at the outbox, as an operator's query would see it."""

    def __init__(self, database_url: str) -> None:
        self._engine = create_engine(database_url)
        self._sessions = session_factory(self._engine)

    async def counts(self) -> dict[str, int]:
        async with self._sessions() as session:
            rows = await session.execute(select(Job.status, func.count()).group_by(Job.status))
            return {status: int(n) for status, n in rows.all()}

    async def all_settled(self) -> bool:
        counts = await self.counts()
        return counts.get("pending", 0) == 0

    async def rows(self, **where: Any) -> list[Job]:
        async with self._sessions() as session:
            query = select(Job).order_by(Job.id)
            for name, value in where.items():
                query = query.where(getattr(Job, name) == value)
            return list((await session.execute(query)).scalars().all())

    async def close(self) -> None:
        await self._engine.dispose()


# --- data ----------------------------------------------------------------------------------------------------------


async def record_contacts(app: FastAPI, client: Any, auth: Auth, count: int) -> list[str]:
    """A discharged client with an assigned peer, who records `count` contacts through the app's use case."""
    episode, peer = await discharged_client_with_peer(client, auth)
    sessions = app.state.sessions
    ids: list[str] = []
    for n in range(count):
        recorded = await record_contact(sessions, peer["id"], peer_contact(episode["client_id"], minutes=15 + n % 90))
        ids.append(str(recorded.encounter["id"]))
    return ids


def contacts_at_the_ehr(ehr: TestEhr) -> list[str]:
    """Our contact id of every Encounter the EHR holds that carries our identifier (duplicates included)."""
    found: list[str] = []
    for encounter in ehr.search("Encounter", _count="2000"):
        for identifier in encounter.get("identifier", []):
            if identifier.get("system") == fhir_profiles.CONTACT_IDENTIFIER_SYSTEM:
                found.append(identifier["value"])
    return found


# --- an EHR link that can be cut -----------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class TcpProxy:
    """Forwards 127.0.0.1:port to the EHR. down(): connections refused and open ones cut; up(): back again.

    It runs its own event loop in a thread, so the test's blocking look-ups never stall it.
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        self.port = _free_port()
        self._target = (target_host, target_port)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()

    def base_url(self, path: str = "/fhir") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def up(self) -> None:
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=10)

    def down(self) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(timeout=10)

    def close(self) -> None:
        self.down()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    async def _start(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port, reuse_address=True)

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._open):
            writer.transport.abort()
        self._open.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.transport.abort()
            return
        self._open |= {writer, upstream_writer}
        await asyncio.gather(self._pipe(reader, upstream_writer), self._pipe(upstream_reader, writer))
        self._open -= {writer, upstream_writer}

    @staticmethod
    async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError, ConnectionError):
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        with contextlib.suppress(OSError, RuntimeError):
            sink.close()
