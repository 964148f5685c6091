"""The test EHR's SMART Backend Services controls (tests/ehr/smart.mjs), from Python.

A `reset()` of the EHR brings these back to what its environment configured (by default: no clients, tokens
not required).
"""

from __future__ import annotations

from typing import Any, cast

import httpx

from tests.support.ehr import TestEhr


def token_url(ehr: TestEhr) -> str:
    return f"{ehr.root_url}/auth/token"


def _admin(ehr: TestEhr, method: str, path: str, body: Any = None) -> Any:
    response = httpx.request(method, f"{ehr.root_url}{path}", json=body, timeout=30.0, trust_env=False)
    assert response.is_success, response.text
    return response.json()


def register_client(ehr: TestEhr, client_id: str, jwks: dict[str, Any], scope: str = "system/*.cruds") -> None:
    _admin(ehr, "POST", "/__admin/smart/clients", {"client_id": client_id, "jwks": jwks, "scope": scope})


def configure(
    ehr: TestEhr, *, require: bool | None = None, token_ttl: int | None = None, announced_ttl: int | None = None
) -> None:
    """require: tokens on /fhir; token_ttl: how long they live; announced_ttl: the expires_in clients are told."""
    body: dict[str, Any] = {}
    if require is not None:
        body["require"] = require
    if token_ttl is not None:
        body["tokenTtl"] = token_ttl
    if announced_ttl is not None:
        body["announcedTtl"] = announced_ttl
    _admin(ehr, "POST", "/__admin/smart/config", body)


def revoke_all(ehr: TestEhr) -> int:
    return int(_admin(ehr, "POST", "/__admin/smart/revoke")["revoked"])


def state(ehr: TestEhr) -> dict[str, Any]:
    """{"require", "tokenTtl", "clients", "issued", "active", "requests": [{status, error, client_id, header,
    claims, scope}, ...]} — every token request since the last reset."""
    return cast(dict[str, Any], _admin(ehr, "GET", "/__admin/smart"))


def timed_requests(ehr: TestEhr) -> list[dict[str, Any]]:
    """The request log with "at" (ms since the epoch, on arrival) on each entry."""
    return cast(list[dict[str, Any]], _admin(ehr, "GET", "/__admin/requests?timing=1"))
