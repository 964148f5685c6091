"""How `peerway serve` runs the app under uvicorn, with limits that hold before any route or token check runs.

- httptools (llhttp, the parser Node.js uses) as the HTTP implementation, with a bound on the request head that
  uvicorn's own httptools protocol lacks: once more than `max_header_bytes` of a request's head (request line and
  headers) have arrived without its end, the client gets a 431 and the connection is closed, so a 50 MB header is
  never buffered. (h11 bounds the head too, but parses and writes every request in Python: about 0.1 ms of CPU a
  request more, a tenth of a summary read.)
- Deadlines uvicorn lacks: a connection must deliver its request head within `header_timeout_seconds` of
  opening (or of the next request's first byte) and the body within `body_timeout_seconds` of the head; else
  a 408 (when nothing was answered yet) and the connection is closed. Uvicorn's keep-alive timeout only runs
  between requests, so a client sending one header byte at a time (slowloris) was never cut off.
- `keep_alive_seconds` for idle connections, `max_connections` (uvicorn's limit_concurrency: 503 past it).
- uvicorn's access log is off (it prints query strings); ours is in service/api/boundary.py.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Literal

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from service.api.logs import logging_config
from service.settings import Settings

log = logging.getLogger(__name__)


def _answer(status: bytes, body: bytes) -> bytes:
    head = (
        b"HTTP/1.1 " + status + b"\r\ncontent-type: text/plain; charset=utf-8\r\nconnection: close\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\n\r\n"
    )
    return head + body


_TIMEOUT = _answer(b"408 Request Timeout", b"the request did not arrive in time")
_HEAD_TOO_LARGE = _answer(b"431 Request Header Fields Too Large", b"the request line and headers are too large")


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a bound on each request head, and a deadline for each part of a request
    the client sends.

    What the client owes is followed from the parser's callbacks: a head from the first byte of a request (or the
    connection's opening) until its headers are complete, then its body until the message is complete, then
    nothing until the next request's first byte. Head bytes are counted by the chunk, from the first chunk that
    arrives while a head is owed; the count starts again when a head is complete, so it never counts another
    request's bytes (it may miss the part of a head that came in the chunk ending the request before it, which
    only lets that head run one chunk over the bound)."""

    header_timeout: float = 10.0
    body_timeout: float = 60.0
    max_head_bytes: int = 65_536

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._awaiting: Literal["head", "body"] | None = None
        self._in_message = False
        self._head_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._expect("head")

    def connection_lost(self, exc: Exception | None) -> None:
        self._expect(None)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._awaiting is None and not self._in_message:
            self._expect("head")  # the first bytes of the next request on a kept-alive connection
        if self._awaiting == "head":
            self._head_bytes += len(data)
        super().data_received(data)
        if self._awaiting == "head" and self._head_bytes > self.max_head_bytes and not self.transport.is_closing():
            self._expect(None)
            self.transport.write(_HEAD_TOO_LARGE)
            log.info("closed a connection: its request head passed %d bytes", self.max_head_bytes)
            self.transport.close()

    # The parser's callbacks, each after uvicorn's own.
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_message = True
        if self._awaiting is None:
            self._expect("head")  # a request pipelined behind the last one

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._expect("body")

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_message = False
        self._expect(None)

    def _expect(self, part: Literal["head", "body"] | None) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._awaiting = part
        self._head_bytes = 0
        if part is not None:
            seconds = self.header_timeout if part == "head" else self.body_timeout
            self._deadline = self.loop.call_later(seconds, self._expired, part)

    def _expired(self, part: str) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        cycle = self.cycle if part == "body" else None  # a head's deadline: the last request's cycle is done
        answered = cycle is not None and cycle.response_started
        if cycle is not None:
            cycle.disconnected = True  # the app's reads end and its writes are dropped
            cycle.message_event.set()
        if not answered:
            self.transport.write(_TIMEOUT)
        log.info("closed a connection: the request %s did not arrive in time", part)
        self.transport.close()


def limited_protocol(settings: Settings) -> type[LimitedHttpToolsProtocol]:
    return type(
        "ConfiguredHttpToolsProtocol",
        (LimitedHttpToolsProtocol,),
        {
            "header_timeout": settings.header_timeout_seconds,
            "body_timeout": settings.body_timeout_seconds,
            "max_head_bytes": settings.max_header_bytes,
        },
    )


def server_config(settings: Settings, app: Any) -> uvicorn.Config:
    """uvicorn's configuration for `peerway serve` (also what the tests start a real server with)."""
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        http=limited_protocol(settings),
        ws="none",
        lifespan="on",
        timeout_keep_alive=settings.keep_alive_seconds,
        limit_concurrency=settings.max_connections,
        forwarded_allow_ips=settings.trusted_proxies,
        log_config=logging_config(settings),
        access_log=False,
        server_header=False,
    )
