"""Every operation of the OpenAPI schema, called by every kind of caller with input schemathesis generates from
the schema (valid and schema-violating): never a 5xx; every 4xx is a FHIR OperationOutcome; and a refused
request stores nothing.

Hypothesis drives the test (one async test per role, so the app and its per-test database are built once per
role); each example draws one request per operation and sends it with the test's httpx client. The database
accumulates what earlier requests stored, and the run starts from a discharged client with an assigned peer.
Requests are linked: ids that answers carried (peers, episodes, clients, Consents, contacts) are drawn for later
requests' path parameters, so requests reach what exists as well as what does not.
The FHIR write endpoints read their bodies themselves (the schema lists none): here their operations get compact
body schemas (tests/api/fhir_bodies.py), and half of the time a real payload from tests/fixtures, damaged.

One request per example, its operation drawn among all of them: 4 roles x EXAMPLES (1,300) = 5,200 requests per
run; PEERWAY_SCHEMA_EXAMPLES sets another number per role.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.core.result import Err
from schemathesis.schemas import APIOperation
from sqlalchemy import text

from service.app.peers import register_org_peer
from service.app.sites import SiteSpec, add_organization, add_site
from service.auth import Role
from service.main import create_app
from service.settings import Settings
from service.store.models import Base
from tests.api.fhir_bodies import BODY_SCHEMAS, FHIR_JSON, KNOWN_CLIENT, as_json, real_bodies, with_fhir_bodies
from tests.conftest import TEST_SECRET, fixture_json

Auth = Callable[..., dict[str, str]]

# The schema only; create_app touches no database until its lifespan starts. /metrics is not in it
# (include_in_schema=False): it answers Prometheus text to a scrape token, not FHIR to a role's caller.
SCHEMA = schemathesis.openapi.from_dict(
    with_fhir_bodies(
        create_app(
            Settings(env="test", database_url="sqlite+aiosqlite://", jwt_secret=TEST_SECRET, _env_file=None)
        ).openapi()
    )
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


# One query counting every table's rows, as text: built by SQLAlchemy on each call it cost more than a request.
ROW_COUNTS = text(" UNION ALL ".join(f"SELECT '{t.name}', count(*) FROM {t.name}" for t in Base.metadata.sorted_tables))  # noqa: S608 - our own table names


async def row_counts(app: FastAPI) -> dict[str, int]:
    """Rows per table (the audit trail's included), in one query."""
    async with app.state.sessions() as session:
        return {name: count for name, count in (await session.execute(ROW_COUNTS)).all()}


# Path parameters naming something Peerway made, and the kind of thing each is.
ID_KINDS = {"peer_id": "peer", "episode_id": "episode", "client_id": "client", "consent_id": "consent"}
ID_KINDS |= {"contact_id": "contact"}
# Answers to these paths carry ids (`id`) of this kind.
ID_SOURCES = (("/api/peers", "peer"), ("/api/org/peers", "peer"), ("/api/episodes", "episode"),
              ("/fhir/Consent", "consent"), ("/fhir/Encounter", "contact"))  # fmt: skip
FHIR_WRITES = frozenset(path for _, path in BODY_SCHEMAS)
EXAMPLES = int(os.environ.get("PEERWAY_SCHEMA_EXAMPLES", "1300"))  # per role
KEPT_PER_KIND = 20


def harvest(known: dict[str, list[str]], path: str, answer: Any) -> None:
    """Remember the ids an answer carries, for later requests."""
    kind = next((k for prefix, k in ID_SOURCES if path.startswith(prefix)), None)
    items = answer if isinstance(answer, list) else [answer]
    if isinstance(answer, dict) and isinstance(answer.get("entry"), list):
        items += [e.get("resource") for e in answer["entry"] if isinstance(e, dict)]
    for item in items:
        if not isinstance(item, dict):
            continue
        found: list[tuple[str | None, Any]] = [(k, item.get(f"{k}_id")) for k in ("peer", "episode", "client")]
        found.append((kind, item.get("id")) if kind else (None, None))
        for what, value in found:
            if what and isinstance(value, str) and value not in known[what] and len(known[what]) < KEPT_PER_KIND:
                known[what].append(value)


@pytest.fixture
async def callers(app: FastAPI, auth: Auth, client: httpx.AsyncClient) -> dict[str, dict[str, str]]:
    """Two hospitals, a peer organization with a peer at the north one, a discharged client of the north one
    with that peer assigned, and a token for each kind of caller."""
    await add_site(app.state.sessions, "north", SiteSpec(name="North Hospital"))
    await add_site(app.state.sessions, "south", SiteSpec(name="South Hospital"))
    await add_organization(app.state.sessions, "alpha", "Alpha Peers")
    peer = await register_org_peer(app.state.sessions, "alpha", "Robin", ["north"])
    tokens = {
        "north coordinator": auth(Role.COORDINATOR, "coord-north", site="north"),
        "north ehr-system": auth(Role.EHR_SYSTEM, "ehr-north", site="north"),
        "organization coordinator": auth(Role.ORGANIZATION_COORDINATOR, "coord-alpha", org="alpha"),
        "peer": auth(Role.PEER, peer.id),
    }
    discharge = fixture_json("davinci/davinci-alerts-discharge-notification-message-bundle-01.json")
    sent = await client.post("/fhir/$process-message", json=discharge, headers=tokens["north ehr-system"])
    assert sent.status_code == 200, sent.text
    [episode] = (await client.get("/api/episodes", headers=tokens["north coordinator"])).json()
    assigned = await client.put(
        f"/api/episodes/{episode['id']}/peer", json={"peer_id": peer.id}, headers=tokens["north coordinator"]
    )
    assert assigned.status_code == 200, assigned.text
    return tokens


def as_request(case: Any, headers: dict[str, str]) -> dict[str, Any]:
    """schemathesis' request (in requests' terms) as httpx keywords, with the caller's token."""
    kwargs: dict[str, Any] = case.as_transport_kwargs(base_url="http://peerway.test", headers=headers)
    kwargs.pop("cookies", None)
    if "data" in kwargs:
        kwargs["content"] = kwargs.pop("data")
    return kwargs


def linked(case: Any, operation: Operation, known: dict[str, list[str]], data: st.DataObject) -> bytes | None:
    """Put, now and then, ids Peerway handed out in the case's path; answer, now and then, a real payload (damaged
    or made hostile) to send as its body instead of schemathesis' own. The draws are the same whatever is known
    (hypothesis requires it); what is known picks among them."""
    for name in list(case.path_parameters or {}):
        use_known = data.draw(st.booleans(), label=f"a known {name}")
        index = data.draw(st.integers(0, KEPT_PER_KIND - 1), label=f"which {name}")
        pool = known.get(ID_KINDS.get(name, ""), [])
        if use_known and pool:
            case.path_parameters[name] = quote(pool[index % len(pool)], safe="")  # as schemathesis' own are
    if operation.path in FHIR_WRITES and data.draw(st.booleans(), label="a real payload"):
        body = data.draw(real_bodies(operation.path), label="body")
        client_id = known["client"][0] if known["client"] else "nobody"
        return as_json(body).replace(KNOWN_CLIENT.encode(), client_id.encode())
    return None


@pytest.fixture
async def known(client: httpx.AsyncClient, callers: dict[str, dict[str, str]]) -> dict[str, list[str]]:
    """Ids Peerway handed out, by kind: from the start (the discharged client) and from every answer since."""
    found: dict[str, list[str]] = defaultdict(list)
    harvest(found, "/api/episodes", (await client.get("/api/episodes", headers=callers["north coordinator"])).json())
    return found


@pytest.mark.parametrize("role", ["north coordinator", "north ehr-system", "organization coordinator", "peer"])
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: the draws name the request
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,  # on purpose: the database and what is known grow over the run
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,  # schemathesis filters its negative cases
    ],
)
@given(data=st.data())
async def test_no_operation_answers_a_5xx(
    app: FastAPI,
    client: httpx.AsyncClient,
    callers: dict[str, dict[str, str]],
    known: dict[str, list[str]],
    role: str,
    data: st.DataObject,
) -> None:
    """One request per example: an operation, then a request for it (one example drawing every operation
    overran hypothesis' buffer, and most of the time went to examples it threw away)."""
    operation = data.draw(st.sampled_from(OPERATIONS), label="operation")
    case = data.draw(STRATEGIES[operation.label], label=operation.label)
    body = linked(case, operation, known, data)
    counts = await row_counts(app)
    request = as_request(case, callers[role])
    if body is not None:
        for key in ("json", "content", "data"):
            request.pop(key, None)
        request["content"] = body
        request["headers"] = {**request["headers"], "Content-Type": FHIR_JSON}
    response = await client.request(**request)
    where = f"{role}: {request['method']} {request['url']} -> {response.status_code} {response.text[:500]}"
    assert response.status_code < 500, where
    event(f"{operation.label} -> {response.status_code}")  # --hypothesis-show-statistics: what got how far
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
        assert await row_counts(app) == counts, f"refused but stored: {where}"
    elif response.content and "json" in response.headers.get("content-type", ""):
        harvest(known, case.path, response.json())


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
