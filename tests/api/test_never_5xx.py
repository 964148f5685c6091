"""Bad input is a 4xx OperationOutcome and stores nothing — never a 5xx — however a real payload is damaged."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import httpx
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from service.auth import Role
from tests.api.test_subscriptions import as_r5, event_notification, stay
from tests.conftest import fixture_json
from tests.support.flow import discharged_client_with_peer, peer_contact

Auth = Callable[..., dict[str, str]]
DISCHARGE = fixture_json("davinci/davinci-alerts-discharge-notification-message-bundle-01.json")

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)


def paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            found += paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += paths(value, (*prefix, index))
    return found


ALL_PATHS = paths(DISCHARGE)


@st.composite
def damaged(draw: st.DrawFn, original: dict[str, Any] = DISCHARGE, all_paths: list[tuple[Any, ...]] = ALL_PATHS) -> Any:
    document = copy.deepcopy(original)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(all_paths))
        parent: Any = document
        try:
            for step in path[:-1]:
                parent = parent[step]
            if draw(st.booleans()) and isinstance(parent, dict):
                parent.pop(path[-1], None)
            else:
                parent[path[-1]] = draw(JSON_VALUES)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier change removed this path
    return document


BUDGET = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)


@BUDGET
@given(bundle=damaged())
async def test_damaged_notifications_never_cause_a_5xx(client: httpx.AsyncClient, auth: Auth, bundle: Any) -> None:
    before = (await client.get("/api/episodes", headers=auth(Role.COORDINATOR))).json()
    response = await client.post(
        "/fhir/$process-message", content=json.dumps(bundle), headers=auth(Role.EHR_SYSTEM, "hospital")
    )
    assert response.status_code < 500, response.text
    assert response.json()["resourceType"] == "OperationOutcome"
    if response.status_code >= 400:
        assert response.json()["issue"][0]["severity"] == "error"
        assert (await client.get("/api/episodes", headers=auth(Role.COORDINATOR))).json() == before


@BUDGET
@given(
    change=st.dictionaries(
        st.sampled_from(
            [
                "status",
                "class",
                "type",
                "subject",
                "period",
                "length",
                "identifier",
                "participant",
                "meta",
                "id",
                "partOf",
            ]
        ),
        JSON_VALUES,
        min_size=1,
    )
)
async def test_damaged_contacts_never_cause_a_5xx(
    client: httpx.AsyncClient, auth: Auth, change: dict[str, Any]
) -> None:
    episode, peer = await discharged_client_with_peer(client, auth)
    response = await client.post(
        "/fhir/Encounter", json=peer_contact(episode["client_id"]) | change, headers=auth(Role.PEER, peer["id"])
    )
    assert response.status_code < 500, response.text
    assert response.json()["resourceType"] in ("OperationOutcome", "Encounter")


# --- subscription notifications (issue 4) ---------------------------------------------------------------------


def numbered(number: int, r5: bool) -> dict[str, Any]:
    """The example with its own event number (so that examples are not all duplicates), maybe in R5 form."""
    bundle = event_notification(number, stay(f"stay-{number}"))
    return as_r5(bundle) if r5 else bundle


NOTIFICATIONS = st.tuples(st.integers(1, 10**9), st.booleans()).flatmap(
    lambda drawn: damaged(numbered(*drawn), paths(numbered(*drawn)))
)


@BUDGET
@given(bundle=NOTIFICATIONS)
async def test_damaged_subscription_notifications_never_cause_a_5xx(
    client: httpx.AsyncClient, auth: Auth, bundle: Any
) -> None:
    before = (await client.get("/api/episodes", headers=auth(Role.COORDINATOR))).json()
    response = await client.post(
        "/fhir/subscription-notification", content=json.dumps(bundle), headers=auth(Role.EHR_SYSTEM, "hospital")
    )
    event(f"HTTP {response.status_code}")  # --hypothesis-show-statistics: how many got past validation
    assert response.status_code < 500, response.text
    assert response.json()["resourceType"] == "OperationOutcome"
    if response.status_code >= 400:
        assert response.json()["issue"][0]["severity"] == "error"
        assert (await client.get("/api/episodes", headers=auth(Role.COORDINATOR))).json() == before
