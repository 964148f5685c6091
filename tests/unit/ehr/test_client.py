"""Reads get the same 401 policy as writes: a fresh SMART token once, then the request once more — against a
token endpoint and a FHIR server played by httpx.MockTransport."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from service.ehr.client import EhrClient
from service.errors import UpstreamError
from tests.support.keys import generate, write_key
from tests.unit.ehr.test_smart import TokenEndpoint, provider

BASE = "https://ehr.example.org/fhir"
PATIENT = {"resourceType": "Patient", "id": "p-1"}


class Fhir:
    """A FHIR server that answers 401 to the first `rejections` requests, then `answer`; records each request."""

    def __init__(self, rejections: int, answer: httpx.Response) -> None:
        self.rejections = rejections
        self.answer = answer
        self.seen: list[tuple[str, str | None]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append((request.url.path, request.headers.get("Authorization")))
        if len(self.seen) <= self.rejections:
            return httpx.Response(401, json={"resourceType": "OperationOutcome", "issue": []})
        return self.answer


async def test_a_401_on_a_read_gets_a_fresh_token_and_the_read_succeeds(tmp_path: Path) -> None:
    endpoint = TokenEndpoint()
    fhir = Fhir(rejections=1, answer=httpx.Response(200, json=PATIENT))
    tokens = provider(write_key(tmp_path, generate("EC"), "pem"), endpoint)
    ehr = EhrClient(BASE, tokens=tokens, transport=httpx.MockTransport(fhir))
    try:
        assert await ehr.read("Patient", "p-1") == PATIENT
    finally:
        await ehr.aclose()
    assert fhir.seen == [("/fhir/Patient/p-1", "Bearer t1"), ("/fhir/Patient/p-1", "Bearer t2")]
    assert len(endpoint.forms) == 2  # one token, then exactly one fresh one


async def test_a_read_still_refused_after_a_fresh_token_is_not_taken_for_a_missing_resource(tmp_path: Path) -> None:
    fhir = Fhir(rejections=2, answer=httpx.Response(200, json=PATIENT))
    tokens = provider(write_key(tmp_path, generate("RSA"), "pem"), TokenEndpoint())
    ehr = EhrClient(BASE, tokens=tokens, transport=httpx.MockTransport(fhir))
    try:
        with pytest.raises(UpstreamError) as raised:
            await ehr.read("Patient", "p-1")
    finally:
        await ehr.aclose()
    assert raised.value.http_status == 401
    assert [auth for _, auth in fhir.seen] == ["Bearer t1", "Bearer t2"]  # refreshed once, not twice


async def test_a_401_on_a_search_page_gets_a_fresh_token_too(tmp_path: Path) -> None:
    page = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"resource": {"resourceType": "Encounter", "id": "e-1"}, "search": {"mode": "match"}}],
    }
    fhir = Fhir(rejections=1, answer=httpx.Response(200, json=page))
    tokens = provider(write_key(tmp_path, generate("EC"), "pem"), TokenEndpoint())
    ehr = EhrClient(BASE, tokens=tokens, transport=httpx.MockTransport(fhir))
    try:
        found = await ehr.search("Encounter", {"_lastUpdated": "ge2026-11-01T00:00:00Z"})
    finally:
        await ehr.aclose()
    assert [r["id"] for r in found] == ["e-1"]
    assert [auth for _, auth in fhir.seen] == ["Bearer t1", "Bearer t2"]


async def test_a_cookie_the_ehr_sets_is_never_sent_back() -> None:
    """Each request stands on its own bearer token: what an EHR or its proxy sets in a cookie is not replayed."""
    cookies: list[str | None] = []

    def fhir(request: httpx.Request) -> httpx.Response:
        cookies.append(request.headers.get("Cookie"))
        return httpx.Response(200, json=PATIENT, headers={"Set-Cookie": "session=abc; Path=/"})

    ehr = EhrClient(BASE, bearer_token="static", transport=httpx.MockTransport(fhir))
    try:
        await ehr.put(PATIENT)
        assert await ehr.read("Patient", "p-1") == PATIENT
    finally:
        await ehr.aclose()
    assert cookies == [None, None]
