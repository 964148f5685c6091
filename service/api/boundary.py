"""The edge every HTTP request passes first: its id, the access log, the headers that keep PHI out of caches, and
the one place an error nobody handled becomes an OperationOutcome — 503 with Retry-After when the database
cannot serve, 500 otherwise — with only its type and the request id logged (its message and traceback can
quote a Patient). Nothing is re-raised to the server, which would log the whole traceback.
"""

from __future__ import annotations

import logging
import os
import re
import time

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.logs import exception_without_messages, request_id
from service.api.responses import error_response, outcome_response
from service.app.health import database_outage

# An incoming X-Request-Id is kept when it has the shape proxies and gateways make (a UUID, or 32 hex digits as
# nginx's $request_id); otherwise we make one. It is written on every log line, so free text is not kept: an
# interface engine's correlation id can be an MRN or an encounter number, and PHI never reaches the log.
SANE_REQUEST_ID = re.compile(
    r"[0-9A-Fa-f]{32}|[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}"
)
# Public, PHI-free answers that may be cached; every other response carries Cache-Control: no-store.
CACHEABLE_PATHS = frozenset({"/fhir/metadata", "/auth/jwks.json", "/docs", "/docs/oauth2-redirect", "/redoc"})
CACHEABLE_PATHS |= {"/openapi.json"}
CACHEABLE_PREFIXES = ("/.well-known/", "/fhir/.well-known/")

# Headers on every response, and on every one but the cacheable; they replace any the app set.
EDGE_HEADERS = ((b"x-content-type-options", b"nosniff"),)
PRIVATE_HEADERS = ((b"cache-control", b"no-store"),)
EDGE_NAMES = frozenset({b"x-request-id", b"x-content-type-options"})
PRIVATE_NAMES = frozenset({b"cache-control"})

# The access log's status for a request whose client left before it could be answered (as nginx logs it).
CLIENT_CLOSED = 499

access_log = logging.getLogger("peerway.access")
log = logging.getLogger(__name__)


def incoming_request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            given = bytes(value).decode("latin-1")
            if SANE_REQUEST_ID.fullmatch(given):
                return given
            break
    return os.urandom(16).hex()  # as uuid4().hex looks, without building a UUID


def cacheable(path: str) -> bool:
    return path in CACHEABLE_PATHS or path.startswith(CACHEABLE_PREFIXES)


def route_of(scope: Scope) -> str:
    """The route template that served the request (never the path itself: it can hold ids)."""
    route = scope.get("route")
    template = getattr(route, "path", None)
    return template if isinstance(template, str) else "(no route)"


class RequestBoundary:
    """ASGI middleware: the outermost of ours (see service/main.py)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = incoming_request_id(scope)
        token = request_id.set(rid)
        started = time.perf_counter()
        private = not cacheable(scope["path"])
        status = 0

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                ours = (*EDGE_HEADERS, *PRIVATE_HEADERS) if private else EDGE_HEADERS
                names = EDGE_NAMES | PRIVATE_NAMES if private else EDGE_NAMES
                # Ours replace any the app set (as MutableHeaders' item assignment would), in one pass.
                kept = [(n, v) for n, v in message.get("headers", ()) if n.lower() not in names]
                message["headers"] = [*kept, (b"x-request-id", rid.encode("latin-1")), *ours]
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except ClientDisconnect:
            # The client went away (or its connection was cut by a deadline): there is no one to answer.
            log.info("the client went away before its request arrived (request %s)", rid)
            status = status or CLIENT_CLOSED
        except Exception as error:
            if status:  # the response has begun: nothing more can be said to the client
                log.error("unhandled %s after the response began (request %s)", type(error).__name__, rid)
            else:
                await self._answer(error, rid)(scope, receive, send_with_headers)
        finally:
            elapsed = round((time.perf_counter() - started) * 1000, 1)
            route = route_of(scope)
            access_log.info(
                "%s %s %s %.1fms",
                scope["method"],
                route,
                status or "-",
                elapsed,
                extra={"method": scope["method"], "route": route, "status": status, "duration_ms": elapsed},
            )
            request_id.reset(token)

    @staticmethod
    def _answer(error: Exception, rid: str) -> ASGIApp:
        outage = database_outage(error)
        if outage is not None:
            log.warning("database unavailable: %s (request %s)", type(error).__name__, rid)
            return error_response(outage)
        # The type and the request id only: the message and the traceback may hold PHI.
        log.error("unhandled %s (request %s)", type(error).__name__, rid)
        log.debug("where (request %s):\n%s", rid, exception_without_messages((type(error), error, error.__traceback__)))
        return outcome_response(500, "exception", "internal error")
