"""No PHI in any log: a database failure while a Patient is being stored, or any unexpected error quoting one,
is answered with an OperationOutcome and logged as its type and the request id only, with every logger at
DEBUG. Each request carries an id, echoed in X-Request-Id."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import event
from sqlalchemy.engine import ExceptionContext, make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from service.auth import Role
from tests.conftest import BACKEND, fixture_json

Auth = Callable[..., dict[str, str]]
ADMIT = "davinci/davinci-alerts-admit-notification-message-bundle-01.json"
DISCHARGE = "davinci/davinci-alerts-discharge-notification-message-bundle-01.json"
PATIENT_NAME = "Halvorson124"  # Patient.name.family in the admit Bundle
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"  # a trace id as a gateway makes it
FHIR_JSON = "application/fhir+json"


def engine_of(app: FastAPI) -> AsyncEngine:
    engine: AsyncEngine = app.state.sessions.kw["bind"]
    return engine


async def impatient(app: FastAPI) -> list[ExceptionContext]:
    """Make the app's database connections give up on a lock after 0.2 s (not 30), and collect its errors."""
    engine = engine_of(app)
    failures: list[ExceptionContext] = []

    @event.listens_for(engine.sync_engine, "connect")
    def _short_waits(dbapi_connection: Any, _record: Any) -> None:
        if BACKEND == "sqlite":
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA busy_timeout=200")
            cursor.close()
        else:  # outside any transaction, so that the pool's rollback keeps it
            dbapi_connection.run_async(lambda connection: connection.execute("SET lock_timeout = '200ms'"))

    @event.listens_for(engine.sync_engine, "handle_error")
    def _collect(context: ExceptionContext) -> None:
        failures.append(context)

    await engine.dispose()  # connections made from now on wait briefly
    return failures


@asynccontextmanager
async def clients_locked(database_url: str) -> AsyncIterator[None]:
    """Another connection holds the lock that writing a client needs (reads still go through)."""
    url = make_url(database_url)
    if BACKEND == "sqlite":
        other = sqlite3.connect(str(url.database), isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # the database's write lock
        try:
            yield
        finally:
            other.execute("ROLLBACK")
            other.close()
    else:
        conn = await asyncpg.connect(url.set(drivername="postgresql").render_as_string(hide_password=False))
        transaction = conn.transaction()
        await transaction.start()
        await conn.execute("LOCK TABLE client IN SHARE MODE")  # blocks inserts, not reads
        try:
            yield
        finally:
            await transaction.rollback()
            await conn.close()


def logged(caplog: pytest.LogCaptureFixture) -> str:
    """Everything the service logged, with arguments and tracebacks as any handler could render them. (The
    test's own HTTP client logs its URLs under "httpx"; `peerway serve` holds that logger at WARNING for the
    service's EHR client: tests/unit/test_logs.py.)"""
    records = [r for r in caplog.records if not r.name.startswith("httpx")]
    parts = [caplog.handler.format(r) for r in records]
    for record in records:
        parts += [record.getMessage(), repr(record.args), repr(record.__dict__)]
    return "\n".join(parts)


async def test_a_database_failure_while_storing_a_patient_logs_no_phi(
    app: FastAPI, client: httpx.AsyncClient, auth: Auth, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    headers = auth(Role.EHR_SYSTEM, "hospital", **{"Content-Type": FHIR_JSON})
    failures = await impatient(app)
    caplog.set_level(logging.DEBUG)
    async with clients_locked(database_url):
        admit = client.post("/fhir/$process-message", content=json.dumps(fixture_json(ADMIT)), headers=headers)
        response = await asyncio.wait_for(admit, timeout=30)  # the lock is ours: fail rather than wait forever

    # The failing statement was the one storing the Patient: its parameters held the name ...
    assert any(PATIENT_NAME in repr(f.parameters) for f in failures), [f.statement for f in failures]
    # ... and neither the exception text, the logs nor the answer do.
    assert all(PATIENT_NAME not in str(f.sqlalchemy_exception) for f in failures)
    assert PATIENT_NAME not in logged(caplog)
    assert PATIENT_NAME not in response.text
    assert response.status_code == 503, response.text
    assert int(response.headers["Retry-After"]) > 0
    assert response.headers["content-type"].startswith(FHIR_JSON)
    assert response.json()["resourceType"] == "OperationOutcome"
    assert response.json()["issue"][0]["code"] == "transient"
    request = response.headers["X-Request-Id"]
    assert any(request in r.getMessage() and r.levelno >= logging.WARNING for r in caplog.records)
    assert all(r.exc_info is None for r in caplog.records)  # no traceback, with or without locals


async def test_an_unexpected_error_quoting_a_patient_is_logged_as_its_type_and_request_only(
    app: FastAPI, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    async def fails() -> None:
        raise ValueError(f"cannot file Patient {PATIENT_NAME}, MRN 12345")

    app.add_api_route("/api/test-failure", fails)
    caplog.set_level(logging.DEBUG)
    response = await client.get("/api/test-failure", headers={"X-Request-Id": TRACE})
    assert response.status_code == 500
    assert response.json()["issue"][0] == {"severity": "error", "code": "exception", "diagnostics": "internal error"}
    assert response.headers["X-Request-Id"] == TRACE
    text = logged(caplog)
    assert PATIENT_NAME not in text
    assert "12345" not in text
    [error] = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert error.getMessage() == f"unhandled ValueError (request {TRACE})"
    assert error.exc_info is None


@pytest.mark.parametrize("bundle", ["discharge", "not-json"])
async def test_the_access_log_names_the_route_of_a_posted_body(
    client: httpx.AsyncClient, auth: Auth, caplog: pytest.LogCaptureFixture, bundle: str
) -> None:
    """The body's shape check hands the JSON it read to the route in the request's scope; the route the router
    matched must still reach the access log (a copy of the scope once hid it: "(no route)")."""
    body = json.dumps(fixture_json(DISCHARGE)).encode() if bundle == "discharge" else b"not json"
    caplog.set_level(logging.INFO)
    response = await client.post("/fhir/$process-message", content=body, headers=auth(Role.EHR_SYSTEM, "hospital"))
    assert response.status_code == (200 if bundle == "discharge" else 400), response.text
    [access] = [r for r in caplog.records if r.name == "peerway.access"]
    assert access.getMessage().startswith(f"POST /fhir/$process-message {response.status_code} ")


async def test_every_response_carries_a_request_id_and_a_proxys_incoming_one_is_kept(client: httpx.AsyncClient) -> None:
    made = (await client.get("/healthz")).headers["X-Request-Id"]
    assert re.fullmatch(r"[0-9a-f]{32}", made)
    assert made != (await client.get("/healthz")).headers["X-Request-Id"]
    for proxys in ("0f8fad5b-d9cb-469f-a165-70867728950e", "7F3A" * 8):  # Envoy's UUID, nginx's $request_id
        assert (await client.get("/healthz", headers={"X-Request-Id": proxys})).headers["X-Request-Id"] == proxys
    # Free text is never kept: it goes on every log line, and an interface engine may correlate by MRN.
    free = ("x" * 300, "has space", "patient=Halvorson124;drop", "-leading-dash", "lb-7f3a.2:9", "12345678")
    for insane in (*free, "Halvorson124-999-87-1037-2000-10-15", "MRN-445566"):
        replaced = await client.get("/healthz", headers={"X-Request-Id": insane})
        assert re.fullmatch(r"[0-9a-f]{32}", replaced.headers["X-Request-Id"]), insane


async def test_the_access_log_names_the_route_never_the_query_or_the_token(
    client: httpx.AsyncClient, auth: Auth, caplog: pytest.LogCaptureFixture
) -> None:
    headers = auth(Role.COORDINATOR, "coord")
    token = headers["Authorization"].removeprefix("Bearer ")
    caplog.set_level(logging.DEBUG)
    response = await client.get("/fhir/Consent", params={"patient": "Patient/mrn-998877"}, headers=headers)
    assert response.status_code < 500
    [access] = [r for r in caplog.records if r.name == "peerway.access"]
    assert access.getMessage().startswith(f"GET /fhir/Consent {response.status_code} ")
    text = logged(caplog)
    assert "mrn-998877" not in text
    assert token not in text
    assert token.split(".")[-1] not in text  # not even the signature
