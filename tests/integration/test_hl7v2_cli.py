"""`peerway feed add|list` and `peerway mllp` as an operator runs them: the listener in its own process takes a
message over TCP, logs no content, and stops cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import pytest

from service.cli import main as cli_main
from tests.support.hl7v2 import adt, free_port, send_one

JWT_SECRET = "cli-secret-0123456789-0123456789-0123"


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, database_url: str) -> dict[str, str]:
    env = {"PEERWAY_DATABASE_URL": database_url, "PEERWAY_JWT_SECRET": JWT_SECRET, "PEERWAY_ENV": "test"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


async def cli(argv: list[str]) -> int:
    return await asyncio.to_thread(cli_main, argv)


async def test_feeds_are_added_once_and_listed_with_their_health(
    cli_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()
    assert await cli(["feed", "add", "north", "--port", str(port), "--facility", "NORTHGEN"]) == 0
    assert f"feed north: port {port}, facility NORTHGEN -> site default" in capsys.readouterr().out
    assert await cli(["feed", "add", "again", "--port", str(port), "--facility", "NORTHGEN"]) == 1
    assert "is feed north" in capsys.readouterr().err
    assert await cli(["feed", "add", "tz", "--port", str(port), "--timezone", "Toronto"]) == 1
    assert "not an IANA time zone" in capsys.readouterr().err
    assert await cli(["feed", "add", "nowhere", "--port", str(port), "--site", "south"]) == 1
    assert "no site 'south'" in capsys.readouterr().err
    assert await cli(["feed", "list"]) == 0
    [line] = capsys.readouterr().out.splitlines()
    assert line.split("\t")[:5] == ["north", "default", f"port {port}", "NORTHGEN", "waiting"]


async def test_the_listener_process_takes_a_message_and_stops_on_sigterm(cli_env: dict[str, str]) -> None:
    port = free_port()
    assert await cli(["feed", "add", "north", "--port", str(port), "--facility", "NORTHGEN"]) == 0
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "service.cli", "mllp",
        env={**os.environ, **cli_env}, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stderr is not None
    lines: list[str] = []
    while not any("MLLP listening" in line for line in lines):
        line = (await process.stderr.readline()).decode()
        assert line, f"the listener exited: {lines}"
        lines.append(line)
    ack = await send_one(port, adt("A01", "CLI-1"))
    assert ack.code == "AA"
    process.send_signal(signal.SIGTERM)
    rest = (await process.stderr.read()).decode()
    assert await process.wait() == 0
    log = "".join(lines) + rest
    assert f"MLLP port {port}: AA" in log
    for phi in ("N1001", "Brien", "Jane", "19800214", "V5001", "CLI-1"):
        assert phi not in log
