"""Delivery to the EHR: dead letters for coordinators, the queue's Prometheus metrics, Peerway's public JWKS.

Dead letters are jobs of every kind the EHR refused for good: writes (contact, careteam) and intake's reads
(fetch, patient, search, recover). They are the coordinator's own site's: a job belongs to the site whose EHR it
goes to, and another site's is 404 exactly like one that does not exist. /metrics answers counts only (jobs per
kind, status and site, attempts, the oldest pending job's age): no ids, no resources. It is still not public:
outside dev it needs the dedicated scrape token PEERWAY_METRICS_TOKEN (Prometheus `authorization:
credentials_file`), so a scraper holds no JWT that could read a client's data.
"""

from __future__ import annotations

import hmac
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest
from pydantic import BaseModel, Field

from service.api.deps import Coordinator, SessionsDep, SettingsDep
from service.app import delivery
from service.app.clock import utcnow
from service.errors import Unauthorized

router = APIRouter(tags=["delivery"])

# A job's (outbox row's) id: a positive 32-bit integer (the column's type on PostgreSQL). A larger number is a 400
# naming the parameter, not a database overflow (a 500).
OutboxId = Annotated[int, Path(ge=1, le=2_147_483_647, description="the outbox row's id")]


class DeadLetterOut(BaseModel):
    id: int
    kind: str = Field(
        description="what the job does: writes contact (Encounter) or careteam (CareTeam); reads fetch (an id-only"
        " event's Encounter), patient, search (what changed) or recover (what a channel missed)"
    )
    subject_id: str = Field(
        description="the contact id, the episode id for a CareTeam, the EHR reference read (Encounter/<id>,"
        " Patient/<id>), or the channel id for a search or recovery"
    )
    attempts: int
    http_status: int | None = Field(description="the EHR's last answer; null when it could not be reached")
    error: str
    outcome: dict[str, Any] | None = Field(description="the EHR's OperationOutcome, as it answered")
    created_at: datetime
    failed_at: datetime | None


def _out(letter: delivery.DeadLetter) -> DeadLetterOut:
    return DeadLetterOut(
        id=letter.id,
        kind=letter.kind,
        subject_id=letter.subject_id,
        attempts=letter.attempts,
        http_status=letter.http_status,
        error=letter.error,
        outcome=letter.outcome,
        created_at=letter.created_at,
        failed_at=letter.failed_at,
    )


@router.get("/api/outbox/dead", summary="Jobs (writes, reads) the EHR refused for good, with its OperationOutcome")
async def list_dead_letters(caller: Coordinator, sessions: SessionsDep) -> list[DeadLetterOut]:
    return [_out(letter) for letter in await delivery.list_dead_letters(sessions, caller.site)]


@router.post("/api/outbox/{item_id}/replay", summary="Queue a dead letter again, once its cause is fixed")
async def replay_dead_letter(item_id: OutboxId, caller: Coordinator, sessions: SessionsDep) -> DeadLetterOut:
    return _out(await delivery.replay_dead_letter(sessions, item_id, caller.site))


@router.delete("/api/outbox/{item_id}", status_code=204, summary="Give up on a dead letter (kept as discarded)")
async def discard_dead_letter(item_id: OutboxId, caller: Coordinator, sessions: SessionsDep) -> Response:
    await delivery.discard_dead_letter(sessions, item_id, caller.site)
    return Response(status_code=204)


@router.get(
    "/.well-known/jwks.json", summary="Peerway's public keys, for the EHR's SMART Backend Services registration"
)
async def jwks(settings: SettingsDep, sessions: SessionsDep) -> JSONResponse:
    published = await delivery.public_jwks(sessions, settings)
    return JSONResponse(published, headers={"Cache-Control": "public, max-age=300"})


async def _scraper(request: Request, settings: SettingsDep) -> None:
    expected = settings.metrics_token.get_secret_value() if settings.metrics_token else None
    if expected is None:
        if settings.env == "dev":
            return
        raise Unauthorized("set PEERWAY_METRICS_TOKEN and scrape /metrics with it")
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected.encode()):
        raise Unauthorized("/metrics needs the scrape token")


@router.get("/metrics", summary="Job figures in the Prometheus text format", include_in_schema=False)
async def metrics(_: Annotated[None, Depends(_scraper)], sessions: SessionsDep) -> Response:
    figures = await delivery.queue_figures(sessions)
    registry = CollectorRegistry(auto_describe=True)
    labels = ["kind", "status", "site"]
    rows = Gauge("peerway_outbox_rows", "Jobs (outbox rows) by kind, status and site", labels, registry=registry)
    attempts = Gauge(
        "peerway_outbox_attempts",
        "Attempts made over the jobs of a kind, status and site",
        labels,
        registry=registry,
    )
    for (kind, status, site), count in figures.rows.items():
        rows.labels(kind, status, site or "unknown").set(count)
        attempts.labels(kind, status, site or "unknown").set(figures.attempts.get((kind, status, site), 0))
    pending = sum(count for (_, status, _), count in figures.rows.items() if status == "pending")
    Gauge("peerway_outbox_depth", "Jobs waiting to be done (pending), every kind", registry=registry).set(pending)
    Gauge("peerway_outbox_dead", "Dead letters waiting for a person", registry=registry).set(
        sum(count for (_, status, _), count in figures.rows.items() if status == "dead")
    )
    Gauge("peerway_outbox_retrying", "Pending jobs that have failed at least once", registry=registry).set(
        figures.retrying
    )
    Gauge("peerway_outbox_max_pending_attempts", "Most attempts made on a pending job", registry=registry).set(
        figures.max_pending_attempts
    )
    oldest = figures.oldest_pending_created_at
    age = max(0.0, (utcnow() - oldest).total_seconds()) if oldest is not None else 0.0
    Gauge("peerway_outbox_oldest_pending_age_seconds", "Age of the oldest pending job", registry=registry).set(age)
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
