"""Every JSON request body, FHIR or /api, is held to its limits here before any parser or route reads it: the
size (413, as service/api/deps.read_body also says), and the shape that service/fhir/shape.py checks on the
bytes (nesting depth, string and number lengths) — a 4xx OperationOutcome naming the element, never the
RecursionError or ValueError that json.loads, pydantic or a recursive check would raise past them.

The body is read here once, in full (it is bounded by the size limit), and handed on unchanged; when the shape
check read its JSON, that value goes on too, in the request's scope (`read_json`), so that a route need not parse
the same bytes again. A request that
carries no credentials at all is passed on unread: every route with a body answers it 401 before reading it
(FastAPI's own JSON bodies are parsed first, but a parse failure there is a 400), so a caller without a token
cannot make Peerway read and scan 5 MB (about a second of CPU for the worst such body; 1 ms for a discharge).
"""

from __future__ import annotations

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.responses import error_response
from service.errors import PayloadTooLarge, PeerwayError
from service.fhir.shape import JsonLimits, Read, check_shape, looks_like_json

METHODS_WITH_BODIES = frozenset({"POST", "PUT", "PATCH"})
# The token endpoint reads only a form (with the size limit) and answers in OAuth's own error shape. Elsewhere a
# body is checked whenever it looks like JSON, whatever its Content-Type says (a FHIR route reads it as JSON).
OWN_BODY_PATHS = frozenset({"/auth/token"})
_READ_JSON = "peerway.read_json"  # scope key: the JSON value read from the body, as check_shape answered it


def read_json(scope: Scope) -> Read | None:
    """The JSON value the shape check read from this request's body, if it read it."""
    read = scope.get(_READ_JSON)
    return read if isinstance(read, Read) else None


class JsonBodyLimits:
    """ASGI middleware: inside the rate limits, outside every route."""

    def __init__(
        self,
        app: ASGIApp,
        max_body_bytes: int,
        credential_headers: frozenset[bytes],
        limits: JsonLimits | None = None,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.credential_headers = credential_headers
        self.limits = limits or JsonLimits()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] not in METHODS_WITH_BODIES
            or scope["path"] in OWN_BODY_PATHS
            or not any(name in self.credential_headers for name, _ in scope["headers"])
        ):
            await self.app(scope, receive, send)
            return
        try:
            body = await self._read(receive)
            if looks_like_json(body) and (read := check_shape(body, self.limits)) is not None:
                # On the request's own scope, not a copy: the router writes the matched route into this dict, and
                # the access log (service/api/boundary.py) reads it from there.
                scope[_READ_JSON] = read
        except PeerwayError as refusal:
            await error_response(refusal)(scope, receive, send)
            return
        given = False

        async def replay() -> Message:
            nonlocal given
            if given:
                return await receive()  # after the body: the client's disconnect, when it comes
            given = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _read(self, receive: Receive) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientDisconnect()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise PayloadTooLarge(f"the body is larger than {self.max_body_bytes} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)
