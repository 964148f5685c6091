"""Token checks without a network: the issuer key cache's refresh limit, the time rules, the scope rules."""

from __future__ import annotations

import time
import warnings
from typing import Any

import authlib.deprecate
import httpx
import pytest

from service.auth.jose import check_times
from service.auth.people import IssuerKeys
from service.auth.scopes import covers, parse_scopes
from service.errors import Unauthorized

with warnings.catch_warnings():
    warnings.simplefilter("ignore", authlib.deprecate.AuthlibDeprecationWarning)
    from authlib.jose import JsonWebKey

ISSUER = "https://idp.example/realms/staff"


class Provider:
    """A provider's discovery and JWKS, counting how often Peerway fetches them."""

    def __init__(self) -> None:
        self.fetches = 0
        self.kids = ["k1"]

    def handle(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("openid-configuration"):
            return httpx.Response(200, json={"issuer": ISSUER, "jwks_uri": "https://idp.example/jwks"})
        self.fetches += 1
        keys = [{**JsonWebKey.generate_key("EC", "P-256", is_private=False).as_dict(), "kid": k} for k in self.kids]
        return httpx.Response(200, json={"keys": keys})


async def test_unknown_kids_refetch_keys_at_most_once_per_interval() -> None:
    provider, clock = Provider(), [1000.0]
    cache = IssuerKeys(httpx.MockTransport(provider.handle), refresh_seconds=60, clock=lambda: clock[0])
    await cache.keys(ISSUER, "k1")
    assert provider.fetches == 1
    provider.kids = ["k2"]
    await cache.keys(ISSUER, "k2")  # a rotation: fetched at once
    assert provider.fetches == 2
    for forged in ("x1", "x2", "x3"):  # a stream of made-up kids right after: held back
        await cache.keys(ISSUER, forged)
    assert provider.fetches == 2
    clock[0] += 61
    await cache.keys(ISSUER, "x4")  # a minute later: one more fetch
    await cache.keys(ISSUER, "x5")
    assert provider.fetches == 3
    await cache.keys(ISSUER, "k2")  # known: no fetch
    assert provider.fetches == 3


async def test_a_discovery_document_for_another_issuer_is_refused() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"issuer": "https://evil.example", "jwks_uri": "https://evil.example/jwks"})

    with pytest.raises(Unauthorized):
        await IssuerKeys(httpx.MockTransport(handle)).keys(ISSUER, None)


NOW = time.time()


@pytest.mark.parametrize(
    ("claims", "ok"),
    [
        ({"exp": NOW + 60, "iat": NOW}, True),
        ({"exp": NOW - 30, "iat": NOW - 100}, True),  # within the leeway
        ({"exp": NOW - 61, "iat": NOW - 100}, False),
        ({"iat": NOW}, False),
        ({"exp": "soon", "iat": NOW}, False),
        ({"exp": True, "iat": NOW}, False),
        ({"exp": NOW + 60, "nbf": NOW + 61}, False),
        ({"exp": NOW + 60, "nbf": NOW + 59}, True),
        ({"exp": NOW + 3650, "iat": NOW}, True),  # 50 s over the cap: within the leeway
        ({"exp": NOW + 3661, "iat": NOW}, False),
        ({"exp": NOW + 60}, False),  # neither iat nor nbf: the lifetime cannot be checked
    ],
)
def test_time_rules(claims: dict[str, Any], ok: bool) -> None:
    if ok:
        check_times(claims, leeway=60, max_lifetime=3600, now=NOW)
    else:
        with pytest.raises(Unauthorized):
            check_times(claims, leeway=60, max_lifetime=3600, now=NOW)


@pytest.mark.parametrize(
    ("granted", "needed", "ok"),
    [
        ("system/Consent.cru", "system/Consent.c", True),
        ("system/Consent.cru", "system/Consent.s", False),
        ("system/*.r", "system/Consent.r", True),
        ("system/Encounter.u", "system/Consent.u", False),
        ("user/Consent.cru", "system/Consent.c", False),  # not a system scope
        ("system/Consent.read", "system/Consent.r", False),  # SMART v1 names are not read as v2
    ],
)
def test_scope_rules(granted: str, needed: str, ok: bool) -> None:
    assert covers(parse_scopes(granted), needed) is ok
