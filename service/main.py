"""create_app(settings): routers, error handlers and the lifespan (database, each site's EHR connection, and the
job worker when PEERWAY_RUN_WORKER is true)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.api import (
    admin,
    alerts,
    answers,
    audit,
    auth,
    cds,
    clients,
    conformance,
    consents,
    contacts,
    delivery,
    feeds,
    intake,
    links,
    matching,
    metadata,
    organizations,
    outcomes,
    peers,
    sharing,
)
from service.api.bodies import JsonBodyLimits
from service.api.boundary import RequestBoundary
from service.api.hot import match_first
from service.api.limits import RateLimiter, RateLimits
from service.api.logs import request_id
from service.api.notifications import router as notifications_router
from service.api.openapi import install as install_openapi
from service.api.openapi import route_methods
from service.api.paths import fhir_ids_in_path
from service.api.responses import FhirResponse, error_response, outcome_response
from service.api.text import url_without_nul
from service.app.sites import site_directory
from service.errors import PeerwayError
from service.fhir.validation import fhirpath
from service.settings import Settings
from service.store.db import create_engine, session_factory
from service.web import routes as web
from service.workers.worker import BackgroundWorker

log = logging.getLogger(__name__)

HTTP_ISSUE_CODES = {401: "login", 403: "forbidden", 404: "not-found", 405: "not-supported", 413: "too-costly"}


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(PeerwayError)
    async def peerway_error(_: Request, exc: PeerwayError) -> FhirResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> FhirResponse:
        first = exc.errors()[0]
        loc = [p for p in first.get("loc", ()) if isinstance(p, int | str)]
        where, rest = (str(loc[0]), loc[1:]) if loc else ("request", [])
        expression = fhirpath(where, rest)
        status = 422 if where == "body" else 400
        return outcome_response(status, "invalid", f"{expression}: {first.get('msg')}", expression)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> FhirResponse:
        code = HTTP_ISSUE_CODES.get(exc.status_code, "processing")
        headers = exc.headers
        if exc.status_code == 405:  # RFC 9110 15.5.6: Allow lists every method the path serves
            headers = {**(headers or {}), "Allow": ", ".join(allowed_methods(request))}
        return outcome_response(exc.status_code, code, str(exc.detail), headers=headers)

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> FhirResponse:
        # Reached only when our own middleware fails (RequestBoundary answers every other error). Never echo
        # the exception: it may hold PHI. The log line names its type and the request only.
        log.error("unhandled %s (request %s)", type(exc).__name__, request_id.get())
        return outcome_response(500, "exception", "internal error")


def allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at the request's path. Starlette's 405 names the methods of the first route
    whose path matched, and a path served by two routes (GET and PUT of a resource) then left one out."""
    state = request.app.state
    if getattr(state, "route_methods", None) is None:  # built once: a flood of 405s must not rebuild it
        state.route_methods = route_methods(request.app)
    path = request.url.path
    return sorted({method for pattern, methods in state.route_methods if pattern.match(path) for method in methods})


def _install_middleware(app: FastAPI, settings: Settings) -> None:
    """Outermost first: the request's id, logs, cache headers and last-resort error answer; then the rate limits
    on failures, which answer 429 before authentication runs; then the size and shape of JSON bodies."""
    app.state.rate_limiter = RateLimiter.from_settings(settings)
    app.add_middleware(
        JsonBodyLimits,
        max_body_bytes=settings.max_body_bytes,
        credential_headers=app.state.rate_limiter.credential_headers,
    )
    app.add_middleware(RateLimits, limiter=app.state.rate_limiter)
    app.add_middleware(RequestBoundary)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(settings.database_url)
        app.state.sessions = session_factory(engine)
        # Each site's EHR client, built from its row (SMART Backend Services, a static token, or none).
        ehr = site_directory(app.state.sessions, settings)
        app.state.ehr = ehr
        # Every kind of job and the periodic checks; without it this process only queues work (`peerway worker`).
        worker = BackgroundWorker(app.state.sessions, ehr, settings) if settings.run_worker else None
        app.state.worker_wake = worker.wake if worker is not None else None  # set when intake work is queued
        try:
            yield
        finally:
            if worker is not None:
                await worker.stop()
            await ehr.aclose()
            await engine.dispose()

    app = FastAPI(
        title="Peerway",
        summary="FHIR integration for Transitional Discharge Model peer-support programs",
        version="0.1.0",
        lifespan=lifespan,
        dependencies=[Depends(url_without_nul), Depends(fhir_ids_in_path)],
        # FastAPI's own OpenTelemetry hooks, off: once a process has OpenTelemetry providers (an auto-instrumented
        # deployment), they would export exception messages and stack traces (which can quote a Patient) and
        # request URLs with their ids; and checking the three global providers cost every request ~1 % of a summary
        # read's CPU. Peerway's logs and /metrics are its own (service/api/logs.py, docs/delivery.md).
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    app.state.settings = settings
    _install_error_handlers(app)
    _install_middleware(app, settings)
    for module in (
        intake,  # first: the busiest route, a hospital's every event (each request is matched route by route)
        metadata,
        outcomes,  # before conformance: Measure/$evaluate-measure is not a Measure's id
        conformance,
        auth,
        admin,
        peers,
        consents,
        sharing,
        clients,
        contacts,
        audit,
        cds,
        matching,
        delivery,
        links,
        organizations,
        feeds,
        alerts,
        answers,
    ):
        app.include_router(module.router)
    app.include_router(matching.fhir_router)
    app.include_router(notifications_router)
    web.install(app)  # the people's web app at / (docs/web-app.md)
    install_openapi(app, settings)  # documents the routes in the order above
    # The peer app's reads (every $peer-summary) are matched right after intake instead of after ~80 routes
    # tried one by one; refused at startup if that could change which route answers a request.
    match_first(app.router.routes, [intake.router, clients.router])
    return app
