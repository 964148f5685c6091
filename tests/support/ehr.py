"""Run the Node test EHR (``tests/ehr/server.mjs``) from Python tests.

The test EHR is Medplum's in-memory FHIR R4 server with validation on every write and test-control
endpoints under ``/__admin`` (see ``tests/ehr/README.md``). Install its dependencies once with
``npm ci --prefix tests/ehr``.

Usage::

    with run_test_ehr() as ehr:
        httpx.put(f"{ehr.base_url}/Encounter/abc", json=encounter)
        assert len(ehr.search("Encounter", identifier="urn:sys|abc")) == 1
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
from pathlib import Path
from typing import IO, Any, cast

import httpx

REPO_ROOT = Path(__file__).resolve().parents[2]
EHR_DIR = REPO_ROOT / "tests" / "ehr"
SERVER_SCRIPT = EHR_DIR / "server.mjs"
INSTALL_HINT = "run: npm ci --prefix tests/ehr"

STARTUP_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0
ADMIN_TIMEOUT_S = 30.0
_STDERR_LINES_KEPT = 200


class TestEhrError(RuntimeError):
    """The test EHR could not be started, or an admin call failed."""

    __test__ = False


class TestEhr:
    """A running test EHR. Get one from :func:`run_test_ehr`."""

    __test__ = False  # a helper, not a pytest test class

    def __init__(self, base_url: str, process: subprocess.Popen[str], stderr_tail: deque[str]) -> None:
        self.base_url: str = base_url
        """FHIR base, e.g. ``http://127.0.0.1:40123/fhir``."""
        self.root_url: str = base_url.removesuffix("/fhir")
        self.process = process
        self._stderr_tail = stderr_tail
        self._client = httpx.Client(base_url=self.root_url, timeout=ADMIN_TIMEOUT_S, trust_env=False)

    def reset(self) -> None:
        """Empty the repository, the request log and the fault queue."""
        self._admin("POST", "/__admin/reset")

    def requests(self) -> list[dict[str, Any]]:
        """Every ``/fhir`` request since the last reset, oldest first.

        Each is ``{"method", "path", "status", "authorization", "contentType", "accept"}``; ``path`` includes
        the query string, ``status`` is ``None`` for a request whose connection was closed by a ``mode="close"``
        fault, and the headers are raw (``None`` when absent).
        """
        return cast(list[dict[str, Any]], self._admin("GET", "/__admin/requests"))

    def fault(self, **spec: Any) -> None:
        """Queue a fault for the next ``/fhir`` requests.

        ``fault(status=503, count=3, retryAfter=2)`` answers the next 3 requests with 503, an
        OperationOutcome and ``Retry-After: 2``; ``fault(mode="close", count=2)`` drops the connection of
        the next 2 without answering. ``count`` defaults to 1. Faults queued by successive calls are
        consumed in order.
        """
        self._admin("POST", "/__admin/faults", body=spec)

    def clear_faults(self) -> None:
        """Drop all queued faults."""
        self._admin("DELETE", "/__admin/faults")

    def count(self, resource_type: str) -> int:
        """Number of current (not deleted) resources of ``resource_type`` in the repository."""
        body = self._admin("GET", f"/__admin/count/{resource_type}")
        return int(cast(dict[str, Any], body)["count"])

    def search(self, resource_type: str, **params: str) -> list[dict[str, Any]]:
        """Search the repository and return the matching resources, following ``next`` links.

        For parameter names that are not Python identifiers use ``**{"part-of": "..."}``. These look-ups
        go through ``/__admin/fhir``: they are not in :meth:`requests`, and faults and bearer auth do not
        apply to them.
        """
        resources: list[dict[str, Any]] = []
        url: str | None = f"/__admin/fhir/{resource_type}"
        query: Mapping[str, str] | None = params
        while url is not None:
            response = self._client.get(url, params=query)
            _raise_for_status(response)
            bundle = cast(dict[str, Any], response.json())
            resources.extend(e["resource"] for e in bundle.get("entry", []) if "resource" in e)
            url = next((link["url"] for link in bundle.get("link", []) if link.get("relation") == "next"), None)
            query = None  # the next link carries the whole query
        return resources

    def read(self, resource_type: str, resource_id: str) -> dict[str, Any] | None:
        """The current version of a resource, or ``None`` if it does not exist (not logged)."""
        response = self._client.get(f"/__admin/fhir/{resource_type}/{resource_id}")
        if response.status_code == httpx.codes.NOT_FOUND:
            return None
        _raise_for_status(response)
        return cast(dict[str, Any], response.json())

    def server_log(self) -> str:
        """The last lines the server wrote to stderr (warnings about profiles, unexpected errors)."""
        return "".join(self._stderr_tail)

    def close(self) -> None:
        self._client.close()

    def _admin(self, method: str, path: str, body: Any = None) -> Any:
        response = self._client.request(method, path, json=body)
        _raise_for_status(response)
        return response.json()


def _raise_for_status(response: httpx.Response) -> None:
    if response.is_error:
        raise TestEhrError(
            f"test EHR: {response.request.method} {response.request.url} -> {response.status_code}: "
            f"{response.text[:2000]}"
        )


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


@contextmanager
def run_test_ehr(*, profiles_dir: Path | None = None, env: dict[str, str] | None = None) -> Iterator[TestEhr]:
    """Start a fresh test EHR on a free port of 127.0.0.1 and stop it on exit.

    ``profiles_dir``: StructureDefinitions (and ValueSets/CodeSystems) to enforce on resources whose
    ``meta.profile`` names them (``EHR_PROFILES_DIR``). ``env``: extra environment for the server, e.g.
    ``{"EHR_REQUIRE_BEARER": "token"}`` or ``{"EHR_DEFAULT_COUNT": "5"}``.
    """
    node = shutil.which("node")
    if node is None:
        raise TestEhrError("test EHR: `node` (Node.js >= 20.19) is not on PATH")
    if not (EHR_DIR / "node_modules" / "@medplum" / "fhir-router").is_dir():
        raise TestEhrError(f"test EHR: its npm dependencies are not installed; {INSTALL_HINT}")

    server_env = dict(os.environ)
    server_env["EHR_PORT"] = "0"
    server_env.pop("EHR_PROFILES_DIR", None)
    server_env.pop("EHR_REQUIRE_BEARER", None)
    if profiles_dir is not None:
        server_env["EHR_PROFILES_DIR"] = str(Path(profiles_dir).resolve())
    server_env.update(env or {})

    process = subprocess.Popen(
        [node, str(SERVER_SCRIPT)],
        cwd=EHR_DIR,
        env=server_env,
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

    ehr: TestEhr | None = None
    try:
        try:
            line = first_line.get(timeout=STARTUP_TIMEOUT_S)
        except queue.Empty:
            raise TestEhrError(
                f"test EHR did not report listening within {STARTUP_TIMEOUT_S:.0f} s; stderr:\n{''.join(stderr_tail)}"
            ) from None
        if not line:
            process.wait(timeout=STOP_TIMEOUT_S)
            for reader in readers:
                reader.join(timeout=STOP_TIMEOUT_S)
            raise TestEhrError(
                f"test EHR exited with code {process.returncode} before listening "
                f"(if modules are missing, {INSTALL_HINT}); stderr:\n{''.join(stderr_tail)}"
            )
        try:
            base_url = str(json.loads(line)["base"])
        except (ValueError, KeyError, TypeError) as exc:
            raise TestEhrError(f"test EHR printed an unexpected first line: {line!r}") from exc
        ehr = TestEhr(base_url, process, stderr_tail)
        yield ehr
    finally:
        if ehr is not None:
            ehr.close()
        _stop(process)
        for reader in readers:
            reader.join(timeout=STOP_TIMEOUT_S)
        for stream in (process.stdout, process.stderr):
            with suppress(OSError):
                stream.close()
