"""create_app(settings): routers, error handlers and the lifespan (database, each site's EHR connection, outbox
worker)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.api import (
    audit,
    cds,
    clients,
    consents,
    contacts,
    delivery,
    intake,
    links,
    matching,
    metadata,
    organizations,
    peers,
    sharing,
)
from service.api.notifications import router as notifications_router
from service.api.responses import FhirResponse
from service.api.text import url_without_nul
from service.app.sites import site_directory
from service.errors import PeerwayError
from service.fhir.build import operation_outcome
from service.fhir.validation import fhirpath
from service.settings import Settings
from service.store.db import create_engine, session_factory
from service.workers.outbox import run_worker

log = logging.getLogger(__name__)

HTTP_ISSUE_CODES = {401: "login", 403: "forbidden", 404: "not-found", 405: "not-supported", 413: "too-costly"}


def _outcome(status: int, code: str, diagnostics: str, expression: str | None = None) -> FhirResponse:
    severity = "error" if status >= 400 else "information"
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return FhirResponse(operation_outcome(severity, code, diagnostics, expression), status_code=status, headers=headers)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(PeerwayError)
    async def peerway_error(_: Request, exc: PeerwayError) -> FhirResponse:
        return _outcome(exc.status, exc.code, exc.diagnostics, exc.expression)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> FhirResponse:
        first = exc.errors()[0]
        loc = [p for p in first.get("loc", ()) if isinstance(p, int | str)]
        where, rest = (str(loc[0]), loc[1:]) if loc else ("request", [])
        expression = fhirpath(where, rest)
        return _outcome(422 if where == "body" else 400, "invalid", f"{expression}: {first.get('msg')}", expression)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> FhirResponse:
        return _outcome(exc.status_code, HTTP_ISSUE_CODES.get(exc.status_code, "processing"), str(exc.detail))

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> FhirResponse:
        # Never echo the exception: it may hold PHI. The log line names the type only.
        log.error("unhandled %s", type(exc).__name__)
        return _outcome(500, "exception", "internal error")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(settings.database_url)
        app.state.sessions = session_factory(engine)
        # Each site's EHR client, built from its row (SMART Backend Services, a static token, or none).
        ehr = site_directory(app.state.sessions, settings)
        app.state.ehr = ehr
        stop = asyncio.Event()
        worker = (
            asyncio.create_task(run_worker(app.state.sessions, ehr, settings, stop)) if settings.run_worker else None
        )
        try:
            yield
        finally:
            stop.set()
            if worker is not None:
                with suppress(asyncio.CancelledError):
                    await asyncio.wait_for(worker, timeout=30)
            await ehr.aclose()
            await engine.dispose()

    app = FastAPI(
        title="Peerway",
        summary="FHIR integration for Transitional Discharge Model peer-support programs",
        version="0.1.0",
        lifespan=lifespan,
        dependencies=[Depends(url_without_nul)],
    )
    app.state.settings = settings
    _install_error_handlers(app)
    for module in (
        metadata,
        intake,
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
    ):
        app.include_router(module.router)
    app.include_router(matching.fhir_router)
    app.include_router(notifications_router)
    return app
