"""`make run-with-ehr`: Peerway in dev mode with the bundled test EHR beside it, both stopped by one Ctrl-C.

The test EHR (tests/ehr: Medplum's in-memory FHIR server, enforcing Peerway's profiles on every write) listens on
EHR_PORT (default 8103, the port of the default PEERWAY_EHR_BASE_URL); `peerway serve` listens on PEERWAY_PORT
(default 8000) with its job worker on, and writes contacts and CareTeams back to that EHR. The EHR forgets
everything when it stops, so Peerway starts on a fresh SQLite database too (in a temporary directory), unless
PEERWAY_DATABASE_URL names one. This is the README's quick start; tests/e2e/test_quickstart.py runs it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.support.ehr import run_test_ehr

ROOT = Path(__file__).resolve().parents[1]
STOP_TIMEOUT_S = 10.0


def _stop(server: subprocess.Popen[bytes]) -> None:
    """Ctrl-C in a terminal reaches the whole process group, so the server is already stopping: give it time,
    then terminate it (a SIGINT sent to this process alone), then kill it."""
    for nudge in (None, server.terminate, server.kill):
        if nudge is not None:
            nudge()
        try:
            server.wait(timeout=STOP_TIMEOUT_S)
            return
        except subprocess.TimeoutExpired:
            continue


def main() -> int:
    ehr_port = os.environ.get("EHR_PORT", "8103")
    with (
        tempfile.TemporaryDirectory(prefix="peerway-with-ehr-") as tmp,
        run_test_ehr(profiles_dir=ROOT / "fhir_profiles" / "data", env={"EHR_PORT": ehr_port}) as ehr,
    ):
        env = {
            **os.environ,
            "PEERWAY_ENV": "dev",
            "PEERWAY_EHR_BASE_URL": ehr.base_url,
            "PEERWAY_RUN_WORKER": "true",
            "PEERWAY_DATABASE_URL": os.environ.get("PEERWAY_DATABASE_URL", f"sqlite+aiosqlite:///{tmp}/peerway.db"),
        }
        print(f"Test EHR (in memory, empty) at {ehr.base_url}; Ctrl-C stops it and Peerway", flush=True)
        server = subprocess.Popen([sys.executable, "-m", "service.cli", "serve"], cwd=ROOT, env=env)
        try:
            return server.wait()
        except KeyboardInterrupt:
            return 130  # as a shell reports Ctrl-C
        finally:
            _stop(server)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # Ctrl-C while the EHR was still starting
        sys.exit(130)
