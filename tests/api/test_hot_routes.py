"""The hand-solved routes (service/api/hot.py) answer as FastAPI's solver would: the same dependencies, checked in
the same order, with the same refusals."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute

from service.api.hot import HandSolved, match_first, route_paths
from service.auth import Role
from tests.support.flow import register_peer

Auth = Callable[..., dict[str, str]]
SUMMARY = "/fhir/Patient/{}/$peer-summary"


def _routes(routes: list[BaseRoute]) -> Iterator[BaseRoute]:
    for route in routes:
        yield route
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from _routes(inner.routes)


def _name(call: Any) -> str:
    named = getattr(call, "__qualname__", None)
    return (named if isinstance(named, str) else type(call).__name__).split(".<locals>")[0]


def _calls(dependant: Dependant) -> Iterator[str]:
    for sub in dependant.dependencies:
        yield _name(sub.call)
        yield from _calls(sub)


def test_each_hand_solved_route_solves_exactly_what_it_declares(app: FastAPI) -> None:
    hand_solved = [r for r in _routes(app.router.routes) if isinstance(r, HandSolved)]
    assert {(r.path, *sorted(r.methods or ())) for r in hand_solved} == {
        ("/fhir/$process-message", "POST"),
        ("/fhir/Patient/{client_id}/$peer-summary", "GET"),
    }
    app_wide = [_name(d.dependency) for d in app.router.dependencies]
    for route in hand_solved:
        assert isinstance(route, APIRoute)
        declared = set(app_wide) | set(_calls(route.dependant))
        assert declared == {_name(call) for call in route.solves}, route.path


async def test_the_summary_refuses_in_fastapis_order(client: httpx.AsyncClient, auth: Auth) -> None:
    # The app-wide checks come before json_only, json_only before the token, the token before the role.
    nul = await client.get(SUMMARY.format("a%00b"), headers={"Accept": "application/xml"})
    assert nul.status_code == 400
    assert "U+0000" in nul.text
    bad_id = await client.get(SUMMARY.format("a_b"), headers={"Accept": "application/xml"})
    assert bad_id.status_code == 400
    assert "path.client_id" in bad_id.text
    xml = await client.get(SUMMARY.format("c1"), headers={"Accept": "application/xml"})
    assert xml.status_code == 406
    anonymous = await client.get(SUMMARY.format("c1"))
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"] == "Bearer"
    coordinator = await client.get(SUMMARY.format("c1"), headers=auth(Role.COORDINATOR, "coord"))
    assert coordinator.status_code == 403
    assert "peer" in coordinator.text
    peer = await register_peer(client, auth)
    stranger = await client.get(SUMMARY.format("c1"), headers=auth(Role.PEER, peer["id"]))
    assert stranger.status_code == 404
    for answer in (nul, bad_id, xml, anonymous, coordinator, stranger):
        assert answer.headers["content-type"].startswith("application/fhir+json")
        assert answer.json()["resourceType"] == "OperationOutcome"
        assert answer.headers["Cache-Control"] == "no-store"
        assert answer.headers["X-Request-Id"]


async def test_intake_refuses_in_fastapis_order(client: httpx.AsyncClient, auth: Auth) -> None:
    path = "/fhir/$process-message"
    anonymous = await client.post(path, content=b"{}")
    assert anonymous.status_code == 401
    registered = await register_peer(client, auth)
    peer = await client.post(path, content=b"{}", headers=auth(Role.PEER, registered["id"]))
    assert peer.status_code == 403
    assert "ehr-system" in peer.text
    nul = await client.post(path + "?x=%00", content=b"{}", headers=auth(Role.PEER, registered["id"]))
    assert nul.status_code == 400
    assert "query.x" in nul.text
    # Asking for XML is a 406 before the token is looked at, as on every FHIR route (it was a 200 in JSON).
    xml = await client.post(path + "?_format=xml", content=b"{}")
    assert xml.status_code == 406
    xml_accept = await client.post(path, content=b"{}", headers={"Accept": "application/fhir+xml"})
    assert xml_accept.status_code == 406
    for answer in (anonymous, peer, nul, xml, xml_accept):
        assert answer.json()["resourceType"] == "OperationOutcome"


def _router(*paths: str) -> APIRouter:
    router = APIRouter()
    for path in paths:
        router.add_api_route(path, _answer, methods=["GET"])
    return router


async def _answer() -> dict[str, str]:
    return {}


def test_a_router_is_matched_first_only_when_no_route_it_passes_could_answer_its_requests() -> None:
    generic, other, hot = _router("/fhir/{kind}/{id}"), _router("/api/sites"), _router("/fhir/Patient/{id}")
    app = FastAPI()
    for router in (generic, other, hot):
        app.include_router(router)
    with pytest.raises(ValueError, match="may match"):  # /fhir/Patient/x was the generic route's
        match_first(app.router.routes, [hot])
    disjoint = FastAPI()
    summary = _router("/fhir/Patient/{id}/$peer-summary")
    for router in (generic, other, summary):
        disjoint.include_router(router)
    match_first(disjoint.router.routes, [summary])
    ours = [p for p in route_paths(disjoint.router.routes) if p.startswith(("/fhir", "/api"))]
    assert ours == ["/fhir/Patient/{id}/$peer-summary", "/fhir/{kind}/{id}", "/api/sites"]


def test_the_peer_app_is_matched_right_after_intake_and_documented_where_it_was(app: FastAPI) -> None:
    matched = route_paths(app.router.routes)
    assert matched[0] == "/fhir/$process-message"
    assert matched.index("/fhir/Patient/{client_id}/$peer-summary") < matched.index("/fhir/metadata")
    documented = list(app.openapi()["paths"])
    assert documented.index("/fhir/Patient/{client_id}/$peer-summary") > documented.index("/fhir/metadata")


def _sync_calls(dependant: Dependant) -> Iterator[str]:
    for sub in dependant.dependencies:
        call = sub.call
        function = call if inspect.isroutine(call) else getattr(call, "__call__", None)  # noqa: B004
        if not inspect.iscoroutinefunction(function):
            yield _name(call)
        yield from _sync_calls(sub)


def test_no_route_or_dependency_waits_for_the_thread_pool(app: FastAPI) -> None:
    # FastAPI runs a plain `def` in its thread pool: a thread hop per request, and a queue behind 40 threads.
    routes = [r for r in route_paths_and_routes(app) if isinstance(r, APIRoute)]
    assert len(routes) > 100
    assert [r.path for r in routes if not inspect.iscoroutinefunction(r.endpoint)] == []
    assert sorted({name for r in routes for name in _sync_calls(r.dependant)}) == []


def route_paths_and_routes(app: FastAPI) -> list[BaseRoute]:
    return list(_routes(app.router.routes))
