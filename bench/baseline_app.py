"""The baselines' bare server: what a FastAPI endpoint costs when it does only the unavoidable part.

- POST /parse-only: parse and validate the posted Bundle with fhir.resources (R4B), answer a small JSON body;
  what any FHIR intake must at least do with a Da Vinci message.
- GET /stored-json: answer the bytes of a stored JSON document (the size of a peer summary), read once at start.
- GET /healthz: for the bench's start-up wait.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from fastapi import FastAPI, Request, Response
from fhir.resources.R4B.bundle import Bundle

app = FastAPI()
_stored = Path(os.environ["BENCH_STORED_JSON"]).read_bytes() if os.environ.get("BENCH_STORED_JSON") else b"{}"


@app.post("/parse-only")
async def parse_only(request: Request) -> Response:
    bundle = Bundle.model_validate(json.loads(await request.body()))
    return Response(json.dumps({"id": bundle.id}).encode(), media_type="application/fhir+json")


@app.get("/stored-json")
async def stored_json() -> Response:
    return Response(_stored, media_type="application/fhir+json")


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}
