"""How `peerway serve` runs the app under uvicorn, with limits that hold before any route or token check runs.

- h11 as the HTTP implementation, because it bounds the request head: past `max_header_bytes` (request line
  and headers) the client gets a 400 and the connection is closed, where httptools would buffer a 50 MB header.
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

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from service.api.logs import logging_config
from service.settings import Settings

log = logging.getLogger(__name__)


def _timeout_response() -> bytes:
    body = b"the request did not arrive in time"
    head = (
        b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\nconnection: close\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\n\r\n"
    )
    return head + body


class DeadlineH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for each part of a request the client sends."""

    header_timeout: float = 10.0
    body_timeout: float = 60.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._awaiting: Literal["head", "body"] | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._expect("head")

    def connection_lost(self, exc: Exception | None) -> None:
        self._expect(None)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._awaiting is None and self.conn.their_state is h11.IDLE:
            self._expect("head")  # the first bytes of the next request on a kept-alive connection
        super().data_received(data)
        self._follow()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._follow()

    def _follow(self) -> None:
        """Match the deadline to what the client still owes us."""
        state = self.conn.their_state
        if state is h11.SEND_BODY:
            if self._awaiting != "body":
                self._expect("body")
        elif state is not h11.IDLE:  # the request is in (DONE) or the connection is ending
            self._expect(None)
        # IDLE: a request head is arriving (its deadline runs), or the connection waits between requests
        # (uvicorn's keep-alive timeout runs).

    def _expect(self, part: Literal["head", "body"] | None) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._awaiting = part
        if part is not None:
            seconds = self.header_timeout if part == "head" else self.body_timeout
            self._deadline = self.loop.call_later(seconds, self._expired, part)

    def _expired(self, part: str) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        answered = part == "body" and self.cycle is not None and self.cycle.response_started
        if self.cycle is not None and part == "body":
            self.cycle.disconnected = True  # the app's reads end and its writes are dropped
            self.cycle.message_event.set()
        if not answered:
            self.transport.write(_timeout_response())
        log.info("closed a connection: the request %s did not arrive in time", part)
        self.transport.close()


def protocol_with_deadlines(settings: Settings) -> type[DeadlineH11Protocol]:
    return type(
        "ConfiguredDeadlineH11Protocol",
        (DeadlineH11Protocol,),
        {"header_timeout": settings.header_timeout_seconds, "body_timeout": settings.body_timeout_seconds},
    )


def server_config(settings: Settings, app: Any) -> uvicorn.Config:
    """uvicorn's configuration for `peerway serve` (also what the tests start a real server with)."""
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        http=protocol_with_deadlines(settings),
        h11_max_incomplete_event_size=settings.max_header_bytes,
        ws="none",
        lifespan="on",
        timeout_keep_alive=settings.keep_alive_seconds,
        limit_concurrency=settings.max_connections,
        forwarded_allow_ips=settings.trusted_proxies,
        log_config=logging_config(settings),
        access_log=False,
        server_header=False,
    )
