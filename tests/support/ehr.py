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

import subprocess
from collections import deque
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import httpx

from tests.support.node import NodeHarness, raise_for_status, run_node

REPO_ROOT = Path(__file__).resolve().parents[2]
EHR_DIR = REPO_ROOT / "tests" / "ehr"
SERVER_SCRIPT = EHR_DIR / "server.mjs"
INSTALL_HINT = "run: npm ci --prefix tests/ehr"

ADMIN_TIMEOUT_S = 30.0


class TestEhrError(RuntimeError):
    """The test EHR could not be started, or an admin call failed."""

    __test__ = False


HARNESS = NodeHarness("test EHR", SERVER_SCRIPT, INSTALL_HINT, TestEhrError)


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
            raise_for_status(response, HARNESS)
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
        raise_for_status(response, HARNESS)
        return cast(dict[str, Any], response.json())

    def server_log(self) -> str:
        """The last lines the server wrote to stderr (warnings about profiles, unexpected errors)."""
        return "".join(self._stderr_tail)

    def close(self) -> None:
        self._client.close()

    def _admin(self, method: str, path: str, body: Any = None) -> Any:
        response = self._client.request(method, path, json=body)
        raise_for_status(response, HARNESS)
        return response.json()


@contextmanager
def run_test_ehr(*, profiles_dir: Path | None = None, env: dict[str, str] | None = None) -> Iterator[TestEhr]:
    """Start a fresh test EHR on a free port of 127.0.0.1 and stop it on exit.

    ``profiles_dir``: StructureDefinitions (and ValueSets/CodeSystems) to enforce on resources whose
    ``meta.profile`` names them (``EHR_PROFILES_DIR``). ``env``: extra environment for the server, e.g.
    ``{"EHR_REQUIRE_BEARER": "token"}`` or ``{"EHR_DEFAULT_COUNT": "5"}``.
    """
    if not (EHR_DIR / "node_modules" / "@medplum" / "fhir-router").is_dir():
        raise TestEhrError(f"test EHR: its npm dependencies are not installed; {INSTALL_HINT}")
    server_env = {"EHR_PORT": "0", "EHR_PROFILES_DIR": "", "EHR_REQUIRE_BEARER": ""}
    if profiles_dir is not None:
        server_env["EHR_PROFILES_DIR"] = str(Path(profiles_dir).resolve())
    server_env.update(env or {})
    with run_node(HARNESS, server_env) as started:
        try:
            base_url = str(started.first_line["base"])
        except KeyError as exc:
            raise TestEhrError(f"test EHR printed an unexpected first line: {started.first_line!r}") from exc
        ehr = TestEhr(base_url, started.process, started.stderr_tail)
        try:
            yield ehr
        finally:
            ehr.close()
