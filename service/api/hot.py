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

from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TypeVar

from fastapi import Request, Response
from fastapi.routing import APIRoute, APIRouter

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
