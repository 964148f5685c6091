"""Intake and the peer's read, in process over ASGI on SQLite, each beside a baseline from the same run.

- $process-message (parse, dedupe, apply, store) vs a bare endpoint that only parses the same Bundle with
  fhir.resources: the difference is what Peerway itself adds.
- the peer's $peer-summary (consent decision, build, audit row) vs a bare endpoint that answers stored JSON.

Run: .venv/bin/python bench/intake_bench.py [iterations]
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from fastapi import FastAPI, Request, Response
from fhir.resources.R4B.bundle import Bundle

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import summarise
from service.auth import Role, mint_token
from service.main import create_app
from service.settings import Settings
from service.store.migrate import upgrade
from tests.support.consents import peer_consent

ROOT = Path(__file__).resolve().parents[1]
DISCHARGE = json.loads(
    (ROOT / "tests/fixtures/davinci/davinci-alerts-discharge-notification-message-bundle-01.json").read_text()
)


def bare_app(stored: bytes) -> FastAPI:
    app = FastAPI()

    @app.post("/parse-only")
    async def parse_only(request: Request) -> Response:
        Bundle.model_validate(json.loads(await request.body()))
        return Response(b"{}", media_type="application/fhir+json")

    @app.get("/stored-json")
    async def stored_json() -> Response:
        return Response(stored, media_type="application/fhir+json")

    return app


async def timed(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    n: int,
    body: Callable[[int], bytes] | None = None,
    headers: dict[str, str] | None = None,
) -> list[int]:
    """n requests, each timed alone; body(i) gives the i-th request's body (a new Bundle.id each time)."""
    samples = []
    for i in range(n):
        content = body(i) if body is not None else None
        start = time.perf_counter_ns()
        response = await client.request(method, url, content=content, headers=headers)
        samples.append(time.perf_counter_ns() - start)
        assert response.status_code == 200, response.text
    return samples


async def main(n: int, tmp: str) -> None:
    if True:
        url = f"sqlite+aiosqlite:///{tmp}/bench.db"
        settings = Settings(env="dev", database_url=url, run_worker=False, _env_file=None)
        app = create_app(settings)
        ehr = {"Authorization": f"Bearer {mint_token(settings, 'hospital', Role.EHR_SYSTEM)}"}
        coordinator = {"Authorization": f"Bearer {mint_token(settings, 'c', Role.COORDINATOR)}"}

        def message(i: int) -> bytes:
            return json.dumps({**DISCHARGE, "id": f"bench-{i}"}).encode()

        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench") as api,
        ):
            intake = await timed(api, "POST", "/fhir/$process-message", n, body=message, headers=ehr)
            [episode] = (await api.get("/api/episodes", headers=coordinator)).json()
            peer = (await api.post("/api/peers", json={"name": "Bench Peer"}, headers=coordinator)).json()
            await api.put(f"/api/episodes/{episode['id']}/peer", json={"peer_id": peer["id"]}, headers=coordinator)
            consent = peer_consent(episode["patient"], ["preferred-name", "admission-discharge"])
            await api.post("/fhir/Consent", json=consent, headers=coordinator)
            as_peer = {"Authorization": f"Bearer {mint_token(settings, peer['id'], Role.PEER)}"}
            summary_url = f"/fhir/Patient/{episode['client_id']}/$peer-summary"
            stored = (await api.get(summary_url, headers=as_peer)).content
            summary = await timed(api, "GET", summary_url, n, headers=as_peer)

        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=bare_app(stored)), base_url="http://b") as bare:
            parse_only = await timed(bare, "POST", "/parse-only", n, body=message)
            stored_only = await timed(bare, "GET", "/stored-json", n)

    print(summarise("baseline: bare endpoint parsing the same Bundle", parse_only))
    print(summarise("$process-message (Da Vinci discharge, new Bundle.id)", intake))
    print(summarise("baseline: bare endpoint answering stored JSON", stored_only))
    print(summarise("$peer-summary (consent decision, build, AuditEvent row)", summary))


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as directory:
        upgrade(f"sqlite+aiosqlite:///{directory}/bench.db")
        asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 300, directory))
