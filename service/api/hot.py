"""Routes whose dependencies are solved by hand: the two that carry nearly all traffic ($peer-summary reads and
Da Vinci intake).

FastAPI's dependency solver walks the route's whole dependency tree on every request (about 10 nodes here:
the app-wide checks, json_only, the role check, principal, the Gatekeeper, the documented bearer scheme, the
session factory, the settings), which cost about a sixth of a summary read's CPU. A HandSolved route keeps its
declared signature, so its OpenAPI operation, its matching and its error answers are FastAPI's own, but answers
with a handler written for it that calls the same dependency functions in the order FastAPI would (app-wide
dependencies, then the route's `dependencies=`, then the parameters' sub-dependencies, each once). Each route
lists what its handler calls (`solves`); tests/api/test_hot_routes.py checks the list against the route's
declared dependency tree, so a dependency added to the route and not to its handler fails a test.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterator, Sequence
from typing import Any, TypeVar

from fastapi import Request, Response
from fastapi.routing import APIRoute, APIRouter
from starlette.routing import BaseRoute, Mount

Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])
Handler = Callable[[Request], Coroutine[Any, Any, Response]]


class HandSolved(APIRoute):
    """An APIRoute answering with `handler` instead of FastAPI's solver (see the module's docstring)."""

    handler: Handler
    solves: tuple[Callable[..., Any], ...]

    def get_route_handler(self) -> Handler:
        return self.handler


def hand_solved_route(
    router: APIRouter,
    path: str,
    handler: Handler,
    solves: Sequence[Callable[..., Any]],
    **route: Any,
) -> Callable[[Endpoint], Endpoint]:
    """Like `router.api_route(path, **route)`, for an endpoint that `handler` answers by hand."""
    kind = type("HandSolvedRoute", (HandSolved,), {"handler": staticmethod(handler), "solves": tuple(solves)})

    def add(endpoint: Endpoint) -> Endpoint:
        router.add_api_route(path, endpoint, route_class_override=kind, **route)
        return endpoint

    return add


def _flat(routes: Sequence[BaseRoute]) -> Iterator[BaseRoute]:
    for route in routes:
        inner = getattr(route, "original_router", None)  # an included router (FastAPI's _IncludedRouter)
        if isinstance(inner, APIRouter):
            yield from _flat(inner.routes)
        else:
            yield route


def route_paths(routes: Sequence[BaseRoute]) -> list[str]:
    """Every route's path, in the order the routes are listed (included routers' routes in place)."""
    return [path for route in _flat(routes) if isinstance(path := getattr(route, "path", None), str)]


def _segments(path: str) -> list[str] | None:
    """A template's segments, or None when it may match any number of them (a `:path` parameter, a mount)."""
    if ":path}" in path:
        return None
    return path.strip("/").split("/")


def _segment_overlaps(a: str, b: str) -> bool:
    return a == b or "{" in a or "{" in b


def may_overlap(first: BaseRoute, second: BaseRoute) -> bool:
    """Whether one request path could match both routes' templates (conservative: True when unsure)."""
    if isinstance(first, Mount) or isinstance(second, Mount):
        prefix = first.path if isinstance(first, Mount) else second.path  # type: ignore[attr-defined]
        other = second if isinstance(first, Mount) else first
        other_path = getattr(other, "path", "")
        return isinstance(other, Mount) or "{" in other_path or other_path.startswith(prefix.rstrip("/") + "/")
    a, b = _segments(getattr(first, "path", "")), _segments(getattr(second, "path", ""))
    if a is None or b is None:
        return True
    return len(a) == len(b) and all(_segment_overlaps(x, y) for x, y in zip(a, b, strict=True))


def match_first(app_routes: list[BaseRoute], routers: Sequence[APIRouter]) -> None:
    """Move the inclusions of `routers` to the front of the app's routes (in the given order), so that their
    requests are matched without trying every route listed before them. Refused (ValueError) when a moved route
    could match a request that a route it now precedes also matches: the order then decides nothing, and every
    request is answered by the same route as before. The OpenAPI document keeps the listed order
    (service/api/openapi.py)."""
    moved = [r for router in routers for r in app_routes if getattr(r, "original_router", None) is router]
    if len(moved) != len(routers):
        raise ValueError("a router to match first is not included in the app")
    for position, inclusion in enumerate(moved):
        before = app_routes[: app_routes.index(inclusion)]
        jumped = [r for r in before if r not in moved[:position]]
        for route in _flat([inclusion]):
            for other in _flat(jumped):
                if may_overlap(route, other):
                    raise ValueError(f"{getattr(route, 'path', route)} may match what {other} matches")
    rest = [r for r in app_routes if r not in moved]
    app_routes[:] = moved + rest
