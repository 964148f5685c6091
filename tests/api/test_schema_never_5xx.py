"""Every operation of the OpenAPI schema, called by every kind of caller with input schemathesis generates from
the schema (valid and schema-violating): never a 5xx; every 4xx is a FHIR OperationOutcome; and a refused
request stores nothing.

Hypothesis drives the test (one async test per role, so the app and its per-test database are built once per
role); each example draws one request per operation and sends it with the test's httpx client. The database
accumulates what earlier requests stored, so later requests also meet peers, episodes and consents that exist.
The FHIR write endpoints read their bodies themselves (the schema lists none), so here they get empty bodies;
tests/api/test_never_5xx.py damages real payloads for them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.core.result import Err
from schemathesis.schemas import APIOperation
from sqlalchemy import func, literal, select, union_all

from service.app.peers import register_org_peer
from service.app.sites import SiteSpec, add_organization, add_site
from service.auth import Role
from service.main import create_app
from service.settings import Settings
from service.store.models import Base
from tests.conftest import TEST_SECRET

Auth = Callable[..., dict[str, str]]

# The schema only; create_app touches no database until its lifespan starts. /metrics is not in it
# (include_in_schema=False): it answers Prometheus text to a scrape token, not FHIR to a role's caller.
SCHEMA = schemathesis.openapi.from_dict(
    create_app(
        Settings(env="test", database_url="sqlite+aiosqlite://", jwt_secret=TEST_SECRET, _env_file=None)
    ).openapi()
)
Operation = APIOperation[Any, Any, Any, Any]


def _operations() -> list[Operation]:
    found = []
    for result in SCHEMA.get_all_operations():
        if isinstance(result, Err):
            raise result.err()
        found.append(result.ok())
    return found


OPERATIONS = _operations()


def requests_for(operation: Operation) -> st.SearchStrategy[Any]:
    """Valid requests for the operation or, where its schema has something to violate (a query, a body, a path
    parameter that is not any string), invalid ones."""
    strategy = operation.as_strategy(GenerationMode.POSITIVE)
    violable = (
        len(operation.query) > 0
        or len(operation.body) > 0
        or any(p.definition["schema"].get("type") != "string" for p in operation.path_parameters)
    )
    return strategy | operation.as_strategy(GenerationMode.NEGATIVE) if violable else strategy


STRATEGIES = {operation.label: requests_for(operation) for operation in OPERATIONS}
OAUTH_ERRORS = {"invalid_request", "invalid_client", "invalid_grant", "unauthorized_client", "unsupported_grant_type",
                "invalid_scope"}  # fmt: skip


async def row_counts(app: FastAPI) -> dict[str, int]:
    """Rows per table (the audit trail's included), in one query."""
    tables = Base.metadata.sorted_tables
    query = union_all(*(select(literal(t.name), select(func.count()).select_from(t).scalar_subquery()) for t in tables))
    async with app.state.sessions() as session:
        return {name: count for name, count in (await session.execute(query)).all()}


@pytest.fixture
async def callers(app: FastAPI, auth: Auth) -> dict[str, dict[str, str]]:
    """Two hospitals, a peer organization with a peer at the north one, and a token for each kind of caller."""
    await add_site(app.state.sessions, "north", SiteSpec(name="North Hospital"))
    await add_site(app.state.sessions, "south", SiteSpec(name="South Hospital"))
    await add_organization(app.state.sessions, "alpha", "Alpha Peers")
    peer = await register_org_peer(app.state.sessions, "alpha", "Robin", ["north"])
    return {
        "north coordinator": auth(Role.COORDINATOR, "coord-north", site="north"),
        "north ehr-system": auth(Role.EHR_SYSTEM, "ehr-north", site="north"),
        "organization coordinator": auth(Role.ORGANIZATION_COORDINATOR, "coord-alpha", org="alpha"),
        "peer": auth(Role.PEER, peer.id),
    }


def as_request(case: Any, headers: dict[str, str]) -> dict[str, Any]:
    """schemathesis' request (in requests' terms) as httpx keywords, with the caller's token."""
    kwargs: dict[str, Any] = case.as_transport_kwargs(base_url="http://peerway.test", headers=headers)
    kwargs.pop("cookies", None)
    if "data" in kwargs:
        kwargs["content"] = kwargs.pop("data")
    return kwargs


@pytest.mark.parametrize("role", ["north coordinator", "north ehr-system", "organization coordinator", "peer"])
@settings(
    max_examples=6,
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: an example is 54 requests; the draws name each one
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
async def test_no_operation_answers_a_5xx(
    app: FastAPI, client: httpx.AsyncClient, callers: dict[str, dict[str, str]], role: str, data: st.DataObject
) -> None:
    counts = await row_counts(app)
    for operation in OPERATIONS:
        case = data.draw(STRATEGIES[operation.label], label=operation.label)
        request = as_request(case, callers[role])
        response = await client.request(**request)
        where = f"{role}: {request['method']} {request['url']} -> {response.status_code} {response.text[:500]}"
        assert response.status_code < 500, where
        after = await row_counts(app)
        if response.status_code >= 400:
            assert response.headers.get("content-type", "").split(";")[0] in {
                "application/fhir+json",
                "application/json",
            }, where
            answer = response.json()
            if request["url"].split("?")[0].endswith("/auth/token"):  # OAuth's own error shape (RFC 6749 5.2)
                assert answer["error"] in OAUTH_ERRORS, where
            else:
                assert answer["resourceType"] == "OperationOutcome", where
                assert answer["issue"][0]["severity"] == "error", where
                assert answer["issue"][0]["code"], where
            assert after == counts, f"refused but stored: {where}"
        counts = after


# What the schema-driven test found (each was a 500); kept as plain examples so they run on every backend.


@pytest.mark.parametrize("url", ["/api/outbox/3396369613368119080779776", "/api/outbox/2147483648"])
async def test_an_outbox_id_past_the_column_is_a_400_naming_it(client: httpx.AsyncClient, auth: Auth, url: str) -> None:
    response = await client.delete(url, headers=auth(Role.COORDINATOR))
    assert response.status_code == 400, response.text
    assert response.json()["issue"][0]["expression"] == ["path.item_id"]


@pytest.mark.parametrize(
    ("method", "url", "body", "expression"),
    [
        ("GET", "/api/peers/a%00b/profile", None, "path.peer_id"),
        ("GET", "/fhir/Consent?patient=%00", None, "query.patient"),
        ("POST", "/api/peers", {"name": "a\x00b"}, "body.name"),
        ("POST", "/fhir/Consent", {"resourceType": "Consent", "note": [{"text": "\x00"}]}, "Consent.note[0].text"),
    ],
)
async def test_text_with_nul_is_refused_naming_where(
    app: FastAPI, client: httpx.AsyncClient, auth: Auth, method: str, url: str, body: Any, expression: str
) -> None:
    headers = auth(Role.COORDINATOR)
    before = await row_counts(app)
    response = await client.request(method, url, json=body, headers=headers)
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["issue"][0]["expression"] == [expression]
    assert await row_counts(app) == before
