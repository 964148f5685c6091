"""The README's quick start, run as a newcomer runs it: `tests.run_with_ehr` (what `make run-with-ehr` starts) on
free ports, then every `sh` block of the "Quick start" section pasted in order into one bash, then Ctrl-C.

So the README cannot drift from the code: a renamed route, a stricter validation, an example that no longer
parses, a token the service refuses all fail here. The time from launch to the Encounter at the EHR is the
"time to first Encounter" a new user sees (without the one-off install), printed at the end of the run.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import fhir_profiles
from tests.conftest import BACKEND
from tests.e2e.figures import FIGURES
from tests.support.processes import port_open, wait_until_serving
from tests.support.server import free_port

pytestmark = pytest.mark.ehr

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
MARK = "@@quickstart-block@@"
RUN_TIMEOUT_S = 120.0
HOSPITAL_PATIENT = "Patient/06e1f0dd-5fbe-4480-9bb4-6b54ec02d31b"  # the Patient of the Da Vinci examples
HOSPITAL_STAY = "5fe62cd5-bfcf-4d3b-a1e9-80d6f75d6f82"  # and their Encounter


def quickstart_blocks(readme: str) -> list[str]:
    """The fenced `sh` blocks of the README's "## Quick start" section, in order."""
    _, found, rest = readme.partition("\n## Quick start\n")
    assert found, "README.md has no '## Quick start' section"
    section = rest.split("\n## ", 1)[0]
    return re.findall(r"^```sh\n(.*?)^```$", section, flags=re.DOTALL | re.MULTILINE)


def block_outputs(stdout: str, count: int) -> list[str]:
    parts = stdout.split(f"{MARK}\n")[1:]
    assert len(parts) == count, stdout
    return parts


def test_the_quick_start_pasted_block_by_block_ends_with_the_contact_at_the_ehr(
    tmp_path: Path, database_url: str
) -> None:
    server_block, *blocks = quickstart_blocks(README.read_text())
    assert server_block.strip() == "make run-with-ehr"
    assert len(blocks) >= 8  # tokens, admit/discharge (ids), peer, consent, assignment, summary, contact, EHR
    assert '/api/episodes"' not in "".join(blocks)  # no listing needed: the intake's answer names the ids
    peerway_port, ehr_port = free_port(), free_port()
    env = {name: value for name, value in os.environ.items() if not name.startswith("PEERWAY_")}
    env |= {
        "PEERWAY_PORT": str(peerway_port),
        "EHR_PORT": str(ehr_port),
        "PEERWAY_DATABASE_URL": database_url,
        "PEERWAY_DEV_SECRET_PATH": str(tmp_path / "dev-jwt-secret"),
        "PEERWAY_AUTH_KEYS_PATH": str(tmp_path / "auth-keys.json"),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",  # `peerway` as in .venv/bin
    }
    log = tmp_path / "run-with-ehr.log"
    started = time.monotonic()
    with log.open("wb") as out:
        # Its own process group, so that the SIGINT below reaches it and its children as Ctrl-C would.
        launcher = subprocess.Popen(
            [sys.executable, "-m", "tests.run_with_ehr"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_until_serving(launcher, f"http://127.0.0.1:{peerway_port}", log)
        to_serving = time.monotonic() - started
        script = "set -euo pipefail\n" + "".join(f"echo '{MARK}'\n{block}" for block in blocks)
        pasted = subprocess.run(
            ["bash", "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S
        )
        to_first_encounter = time.monotonic() - started
        assert pasted.returncode == 0, f"{pasted.stdout}\n{pasted.stderr}\n{log.read_text()}"
        outputs = block_outputs(pasted.stdout, len(blocks))

        # The peer's summary shows the consented categories, and nothing that identifies the client elsewhere.
        summary: dict[str, Any] = next(
            json.loads(text) for text in outputs if text.lstrip().startswith('{\n  "resourceType": "Bundle"')
        )
        resources = {e["resource"]["resourceType"]: e["resource"] for e in summary["entry"]}
        assert set(resources) == {"Patient", "Encounter"}
        assert resources["Patient"]["name"][0]["family"] == "Halvorson124"
        assert "birthDate" not in resources["Patient"]
        assert "identifier" not in resources["Patient"]

        # The last block shows the peer's contact as the EHR holds it.
        encounter = json.loads(outputs[-1])
        assert encounter["resourceType"] == "Encounter"
        assert encounter["identifier"][0]["system"] == fhir_profiles.CONTACT_IDENTIFIER_SYSTEM
        assert encounter["subject"]["reference"] == HOSPITAL_PATIENT
        assert encounter["class"]["code"] == "FLD"
        assert encounter["length"]["value"] == 70
        assert encounter["participant"][0]["individual"]["display"] == "Alex Morgan"
        assert encounter["partOf"] == {"reference": f"Encounter/{HOSPITAL_STAY}"}  # the stay it follows from
        assert port_open(ehr_port)
    finally:
        if launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGINT)  # Ctrl-C
        code = launcher.wait(timeout=60)

    # One Ctrl-C stops both: nothing listens any more.
    assert code == 130, log.read_text()  # as a shell reports Ctrl-C
    assert "Traceback" not in log.read_text()
    assert not port_open(peerway_port)
    assert not port_open(ehr_port)
    FIGURES.append(
        f"[{BACKEND}] quick start: time to first Encounter {to_first_encounter:.1f} s from launch "
        f"(serving after {to_serving:.1f} s, the pasted blocks {to_first_encounter - to_serving:.1f} s)"
    )
