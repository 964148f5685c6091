"""Failed authentication from one address is limited before any token is checked: past the burst, 429 with
Retry-After, for that address only, until the bucket refills. Successful requests, and requests that carried
no credentials, never count. The token endpoint has a budget of its own."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from fastapi import FastAPI

from service.api.limits import FailureBudget
from service.auth import Role
from service.main import create_app
from service.settings import Settings

Auth = Callable[..., dict[str, str]]
BAD_TOKEN = {"Authorization": "Bearer not-a-token-at-all"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
BAD_ASSERTION = (
    "grant_type=client_credentials"
    "&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer"
    "&client_assertion=eyJhbGciOiJSUzM4NCJ9.eyJpc3MiOiJub2JvZHkifQ.c2lnbmF0dXJl&scope=system%2FEncounter.u"
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def limited(settings: Settings, clock: Clock) -> AsyncIterator[FastAPI]:
    """The app with 3 failed authentications a burst (6 a minute) and 2 refused token requests (3 a minute)."""
    limits = {
        "auth_failure_burst": 3,
        "auth_failures_per_minute": 6.0,
        "token_failure_burst": 2,
        "token_failures_per_minute": 3.0,
    }
    application = create_app(settings.model_copy(update=limits))
    application.state.rate_limiter.authentication.clock = clock
    application.state.rate_limiter.token_endpoint.clock = clock
    async with application.router.lifespan_context(application):
        yield application


def from_address(app: FastAPI, address: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://peerway.test")


async def test_bad_tokens_from_one_address_get_429_until_the_bucket_refills(
    limited: FastAPI, clock: Clock, auth: Auth
) -> None:
    async with from_address(limited, "203.0.113.7") as attacker, from_address(limited, "198.51.100.2") as other:
        for _ in range(3):
            assert (await attacker.get("/api/episodes", headers=BAD_TOKEN)).status_code == 401
        refused = await attacker.get("/api/episodes", headers=BAD_TOKEN)
        assert refused.status_code == 429
        assert refused.headers["Retry-After"] == "10"  # one failure back at 6 a minute
        assert refused.json()["resourceType"] == "OperationOutcome"
        assert refused.json()["issue"][0]["code"] == "throttled"
        # Refused before authentication: a good token from that address waits too; another address does not.
        assert (await attacker.get("/api/episodes", headers=auth(Role.COORDINATOR, "c"))).status_code == 429
        assert (await other.get("/api/episodes", headers=auth(Role.COORDINATOR, "c"))).status_code == 200
        assert (await other.get("/api/episodes", headers=BAD_TOKEN)).status_code == 401
        # Probes answer whatever the address did.
        assert (await attacker.get("/healthz")).status_code == 200
        clock.now += 10
        assert (await attacker.get("/api/episodes", headers=BAD_TOKEN)).status_code == 401
        assert (await attacker.get("/api/episodes", headers=BAD_TOKEN)).status_code == 429


async def test_successful_requests_and_requests_without_credentials_never_count(limited: FastAPI, auth: Auth) -> None:
    async with from_address(limited, "192.0.2.10") as caller:
        good = auth(Role.COORDINATOR, "c")
        for _ in range(10):
            assert (await caller.get("/api/episodes", headers=good)).status_code == 200
            assert (await caller.get("/api/episodes")).status_code == 401  # no credentials: nothing guessed
        for _ in range(3):
            assert (await caller.get("/api/episodes", headers=BAD_TOKEN)).status_code == 401
        assert (await caller.get("/api/episodes", headers=BAD_TOKEN)).status_code == 429


async def test_refused_client_assertions_at_the_token_endpoint_get_429_in_oauths_shape(
    limited: FastAPI, clock: Clock
) -> None:
    async with from_address(limited, "203.0.113.8") as caller:
        for _ in range(2):
            response = await caller.post("/auth/token", content=BAD_ASSERTION, headers=FORM)
            assert response.status_code == 401, response.text
        refused = await caller.post("/auth/token", content=BAD_ASSERTION, headers=FORM)
        assert refused.status_code == 429
        assert refused.headers["Retry-After"] == "20"
        assert refused.headers["Cache-Control"] == "no-store"
        assert refused.json()["error"] == "temporarily_unavailable"
        # The token endpoint's budget is its own: the same address may still present a token elsewhere.
        assert (await caller.get("/api/episodes", headers=BAD_TOKEN)).status_code == 401
        clock.now += 20
        assert (await caller.post("/auth/token", content=BAD_ASSERTION, headers=FORM)).status_code == 401


def test_a_budget_remembers_a_bounded_number_of_addresses_and_forgets_full_buckets() -> None:
    clock = Clock()
    budget = FailureBudget(burst=2, per_minute=60.0, max_clients=100, clock=clock)
    for n in range(1000):
        budget.spend(f"10.0.{n // 256}.{n % 256}")
    assert len(budget) == 100  # the least recently seen were forgotten
    budget.spend("10.9.9.9")
    budget.spend("10.9.9.9")
    assert budget.wait("10.9.9.9") == pytest.approx(1.0)
    clock.now += 2
    assert budget.wait("10.9.9.9") == 0
    assert budget.wait("10.0.3.231") == 0
    assert len(budget) == 98  # the two asked about were full again: forgotten
