"""A search whose answer replaces what Peerway holds must be the whole answer or a failure: an EHR (played by
httpx.MockTransport) answering with no searchset, paging in a loop, pointing a next link out of its base through
dot segments, or past the caps, is an UpstreamError, never a short list taken for "nothing more"."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from service.ehr import client as ehr_client
from service.ehr.client import EhrClient
from service.errors import UpstreamError

BASE = "https://ehr.example.org/fhir"
GOAL = {"resourceType": "Goal", "id": "g1"}


def searchset(next_url: str | None = None, entries: int = 1) -> dict[str, Any]:
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"resource": GOAL, "search": {"mode": "match"}}] * entries,
    }
    if next_url:
        bundle["link"] = [{"relation": "next", "url": next_url}]
    return bundle


class Ehr:
    """Answers each request with `answer(request)`; records the URLs and Prefer headers it was sent."""

    def __init__(self, answer: Callable[[httpx.Request], dict[str, Any]]) -> None:
        self.answer = answer
        self.seen: list[tuple[str, str | None]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append((str(request.url), request.headers.get("Prefer")))
        return httpx.Response(200, json=self.answer(request))


async def search(ehr: Ehr) -> list[dict[str, Any]]:
    reader = EhrClient(BASE, bearer_token="secret", transport=httpx.MockTransport(ehr))
    try:
        return await reader.search("Goal", {"patient": "Patient/p1"})
    finally:
        await reader.aclose()


@pytest.mark.parametrize(
    "answer",
    [
        {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "processing"}]},
        {"resourceType": "Bundle", "type": "collection", "entry": []},
        {"hello": "world"},
    ],
)
async def test_an_answer_that_is_no_searchset_is_a_failed_read_not_an_empty_one(answer: dict[str, Any]) -> None:
    with pytest.raises(UpstreamError, match="no searchset"):
        await search(Ehr(lambda _: answer))


async def test_a_search_asks_for_strict_handling() -> None:
    ehr = Ehr(lambda _: searchset())
    assert await search(ehr) == [GOAL]
    assert [prefer for _, prefer in ehr.seen] == ["handling=strict"]


async def test_a_next_link_that_climbs_out_of_the_base_is_refused_before_the_token_goes_there() -> None:
    for escape in (f"{BASE}/../admin/users", f"{BASE}/%2e%2e/admin/users"):

        def answer(request: httpx.Request, escape: str = escape) -> dict[str, Any]:
            return searchset(escape) if request.url.path == "/fhir/Goal" else {}

        ehr = Ehr(answer)
        with pytest.raises(UpstreamError, match="leaves its base"):
            await search(ehr)
        assert len(ehr.seen) == 1


async def test_a_paging_loop_is_a_failed_read() -> None:
    ehr = Ehr(lambda _: searchset(f"{BASE}/Goal?page=2"))
    with pytest.raises(UpstreamError, match="repeat"):
        await search(ehr)
    assert len(ehr.seen) == 2


async def test_an_answer_past_the_caps_is_a_failed_read(monkeypatch: pytest.MonkeyPatch) -> None:
    pages = iter(range(2, 1000))
    monkeypatch.setattr(ehr_client, "MAX_SEARCH_PAGES", 3)
    with pytest.raises(UpstreamError, match="exceeds"):
        await search(Ehr(lambda _: searchset(f"{BASE}/Goal?page={next(pages)}")))
    monkeypatch.setattr(ehr_client, "MAX_SEARCH_ENTRIES", 10)
    with pytest.raises(UpstreamError, match="exceeds"):
        await search(Ehr(lambda _: searchset(f"{BASE}/Goal?page={next(pages)}", entries=6)))


async def test_an_answer_nested_past_the_json_parser_is_a_failed_read() -> None:
    deep = '{"resourceType":"Bundle","type":"searchset","x":' + "[" * 100_000 + "]" * 100_000 + "}"
    reader = EhrClient(BASE, transport=httpx.MockTransport(lambda _: httpx.Response(200, text=deep)))
    try:
        with pytest.raises(UpstreamError, match="not JSON"):
            await reader.search("Goal", {"patient": "Patient/p1"})
    finally:
        await reader.aclose()
