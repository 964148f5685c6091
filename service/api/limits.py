"""Rate limits on failures, before any route or token check runs: per client address, a token bucket of failed
authentications (a 401 to a request that carried credentials) and one of failed client authentications at the
token endpoint (a 401 from /auth/token). Successful requests never spend anything, nor do requests that carried
no credentials (refusing them costs nothing and guesses nothing); an empty bucket answers 429 with Retry-After
(at /auth/token in OAuth's error shape, as that endpoint's other errors).

The buckets live in the process: each `peerway serve` process counts on its own (see README, "Limits").
"""

from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.responses import error_response
from service.errors import TooManyRequests
from service.settings import Settings

TOKEN_PATH = "/auth/token"  # noqa: S105 - a path, not a secret
# Probes must answer even to an address that is waiting out a limit (an orchestrator shares it with others).
UNLIMITED_PATHS = frozenset({"/healthz", "/readyz"})

log = logging.getLogger(__name__)


@dataclass
class _Bucket:
    tokens: float
    at: float


class FailureBudget:
    """Per client address: `burst` failures at once, refilled at `per_minute`; at most `max_clients` addresses
    are remembered (the least recently seen is forgotten first, and a full bucket is not kept at all)."""

    def __init__(
        self, burst: int, per_minute: float, max_clients: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.burst = burst
        self.rate = per_minute / 60.0
        self.max_clients = max_clients
        self.clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def _refilled(self, client: str) -> _Bucket | None:
        bucket = self._buckets.get(client)
        if bucket is None:
            return None
        now = self.clock()
        bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.at) * self.rate)
        bucket.at = now
        if bucket.tokens >= self.burst:
            del self._buckets[client]
            return None
        return bucket

    def wait(self, client: str) -> float:
        """Seconds until `client` may fail once more (0: it may now)."""
        bucket = self._refilled(client)
        if bucket is None or bucket.tokens >= 1:
            return 0.0
        return (1 - bucket.tokens) / self.rate

    def spend(self, client: str) -> None:
        """Count one failure of `client`."""
        bucket = self._refilled(client) or _Bucket(float(self.burst), self.clock())
        bucket.tokens = max(0.0, bucket.tokens - 1)
        self._buckets[client] = bucket
        self._buckets.move_to_end(client)
        while len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)

    def __len__(self) -> int:
        return len(self._buckets)


@dataclass(frozen=True)
class RateLimiter:
    """The two budgets of one app, and what counts against them."""

    authentication: FailureBudget
    token_endpoint: FailureBudget
    credential_headers: frozenset[bytes]

    @classmethod
    def from_settings(cls, settings: Settings) -> RateLimiter:
        clients = settings.rate_limit_clients
        return cls(
            FailureBudget(settings.auth_failure_burst, settings.auth_failures_per_minute, clients),
            FailureBudget(settings.token_failure_burst, settings.token_failures_per_minute, clients),
            frozenset({b"authorization", settings.subscription_header.lower().encode("latin-1")}),
        )

    def budget(self, path: str) -> FailureBudget:
        return self.token_endpoint if path == TOKEN_PATH else self.authentication

    def failed(self, scope: Scope, status: int) -> bool:
        if status != 401:
            return False
        # The token endpoint's credentials are in its body (a client assertion); elsewhere, in headers.
        return scope["path"] == TOKEN_PATH or any(name in self.credential_headers for name, _ in scope["headers"])


class RateLimits:
    """ASGI middleware applying a RateLimiter to every HTTP request."""

    def __init__(self, app: ASGIApp, limiter: RateLimiter) -> None:
        self.app = app
        self.limiter = limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in UNLIMITED_PATHS:
            await self.app(scope, receive, send)
            return
        client = scope["client"][0] if scope.get("client") else "unknown"
        budget = self.limiter.budget(scope["path"])
        wait = budget.wait(client)
        if wait > 0:
            log.warning("refused a request: too many failed authentications from its address")
            await _refusal(scope["path"], max(1, math.ceil(wait)))(scope, receive, send)
            return
        status = 0

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        await self.app(scope, receive, watch)
        if self.limiter.failed(scope, status):
            budget.spend(client)


def _refusal(path: str, retry_after_seconds: int) -> ASGIApp:
    refusal = TooManyRequests(
        "too many failed authentications from this address; try again later", retry_after_seconds=retry_after_seconds
    )
    if path == TOKEN_PATH:  # RFC 6749 has no code for this; an OAuth client reads the status and Retry-After
        body = {"error": "temporarily_unavailable", "error_description": refusal.diagnostics}
        return JSONResponse(body, status_code=refusal.status, headers=refusal.headers)
    return error_response(refusal)
