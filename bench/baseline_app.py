"""The baselines' bare server: what a FastAPI endpoint costs when it does only the unavoidable part.

- POST /parse-only: parse and validate the posted Bundle with fhir.resources (R4B), answer a small JSON body;
  what any FHIR intake must at least do with a Da Vinci message.
- GET /stored-json: answer the bytes of a stored JSON document (the size of a peer summary), read once at start.
- GET /audited-read?client=&peer=: the least an audited summary read does on Peerway's own store
  (BENCH_DATABASE_URL): the summary's one statement and one audit row committed with Peerway's group commit
  before the stored JSON is answered; no token, consent decision, rendering, middleware or access log. Not the
  issue's baseline: a floor, to tell what Peerway's store costs from what its request handling costs.
- GET /unaudited-read?client=&peer=: the same without the audit row: what the statement alone costs, so that the
  audit's share of the floor is told apart (a read Peerway never makes: every summary read is audited).
- GET /healthz: for the bench's start-up wait.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from fastapi import FastAPI, HTTPException, Request, Response
from fhir.resources.R4B.bundle import Bundle

from service.app.clock import new_id, utcnow
from service.store import audits, repository
from service.store.db import SessionFactory, create_engine, engine_of, session_factory

app = FastAPI()
_stored = Path(os.environ["BENCH_STORED_JSON"]).read_bytes() if os.environ.get("BENCH_STORED_JSON") else b"{}"
_sessions: list[SessionFactory] = []
AUDIT_TEXT = json.dumps({"resourceType": "AuditEvent", "text": "x" * 1400})  # about a disclosure's AuditEvent


@app.post("/parse-only")
async def parse_only(request: Request) -> Response:
    bundle = Bundle.model_validate(json.loads(await request.body()))
    return Response(json.dumps({"id": bundle.id}).encode(), media_type="application/fhir+json")


@app.get("/stored-json")
async def stored_json() -> Response:
    return Response(_stored, media_type="application/fhir+json")


def _store() -> SessionFactory:
    if not _sessions:
        _sessions.append(session_factory(create_engine(os.environ["BENCH_DATABASE_URL"])))
    return _sessions[0]


@app.get("/unaudited-read")
async def unaudited_read(client: str, peer: str) -> Response:
    if await repository.peer_summary_rows(engine_of(_store()), peer, client) is None:
        raise HTTPException(404)
    return Response(_stored, media_type="application/fhir+json")


@app.get("/audited-read")
async def audited_read(client: str, peer: str) -> Response:
    sessions = _store()
    if await repository.peer_summary_rows(engine_of(sessions), peer, client) is None:
        raise HTTPException(404)
    at, audit_id = utcnow(), new_id()
    row = {"id": audit_id, "client_id": client, "actor": f"Practitioner/{peer}", "outcome": "0"}
    await audits.append(sessions, row | {"recorded_at": at, "resource_json": AUDIT_TEXT})
    return Response(_stored, media_type="application/fhir+json")


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}
