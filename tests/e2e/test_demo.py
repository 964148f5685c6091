"""`make demo KEEP=1`: the demo prints whole resources (the contact and the CareTeam as the EHR holds them), then
leaves Peerway serving its data and the EHR up, until Ctrl-C stops both."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.support.processes import port_open, wait_until_serving
from tests.support.server import free_port

pytestmark = pytest.mark.ehr

ROOT = Path(__file__).resolve().parents[2]
CARETEAM_TITLE = "== ... and the client's CareTeam, with the peer on it\n"


def test_demo_keep_shows_the_careteam_whole_and_leaves_peerway_and_the_ehr_running(tmp_path: Path) -> None:
    peerway_port, ehr_port = free_port(), free_port()
    env = {name: value for name, value in os.environ.items() if not name.startswith("PEERWAY_")}
    env |= {
        "KEEP": "1",
        "PEERWAY_PORT": str(peerway_port),
        "EHR_PORT": str(ehr_port),
        "PEERWAY_DEV_SECRET_PATH": str(tmp_path / "dev-jwt-secret"),
        "PEERWAY_AUTH_KEYS_PATH": str(tmp_path / "auth-keys.json"),
    }
    out, err = tmp_path / "demo.out", tmp_path / "demo.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        command = [sys.executable, "-m", "tests.demo"]
        demo = subprocess.Popen(command, cwd=ROOT, env=env, stdout=stdout, stderr=stderr, start_new_session=True)
    try:
        wait_until_serving(demo, f"http://127.0.0.1:{peerway_port}", err)
        shown = out.read_text()
        careteam = json.loads(shown.split(CARETEAM_TITLE, 1)[1].split("\n== ", 1)[0])
        assert careteam["resourceType"] == "CareTeam"
        assert careteam["participant"][0]["member"]["display"] == "Alex Morgan"
        assert "\n  ...\n" not in shown  # nothing cut short

        # The kept EHR still holds what the demo wrote; the kept Peerway serves the demo's episode.
        encounters = httpx.get(f"http://127.0.0.1:{ehr_port}/fhir/Encounter", trust_env=False).json()
        assert encounters["total"] == 1
        token = subprocess.run(
            [sys.executable, "-m", "service.cli", "token", "--role", "coordinator"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        episodes = httpx.get(
            f"http://127.0.0.1:{peerway_port}/api/episodes",
            headers={"Authorization": f"Bearer {token}"},
            trust_env=False,
        ).json()
        assert [e["state"] for e in episodes] == ["in-community"]
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGINT)  # Ctrl-C
        demo.wait(timeout=60)
    assert not port_open(peerway_port)
    assert not port_open(ehr_port)
    assert "Traceback" not in err.read_text()
