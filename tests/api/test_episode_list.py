"""GET /api/episodes a page at a time: a coordinator's integration walks the site's episodes oldest first by
following the Link header, meets each exactly once (two created at one instant included), never another
site's, can ask for the open or the ended ones only, and sees which the program ended and why. Before, the
whole table came back in one answer (1 s of the database alone with 20,000 episodes)."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import insert

from service.app.sites import SiteSpec, add_site
from service.auth import Role
from service.store.matching import EpisodeClosure
from service.store.models import Client, Episode

AT = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
NEXT = re.compile(r'^<(/api/episodes\?[^>]+)>; rel="next"$')


async def fill(app: FastAPI, site: str, prefix: str, count: int, ended: set[int]) -> None:
    """`count` clients with an episode each, created two at a time at the same instant; those of `ended` ended."""
    async with app.state.sessions() as session:
        await session.execute(
            insert(Client),
            [
                {
                    "id": f"{prefix}c{i}",
                    "site": site,
                    "ehr_patient_id": f"{prefix}c{i}",
                    "patient_json": "{}",
                    "created_at": AT,
                    "updated_at": AT,
                }
                for i in range(count)
            ],
        )
        await session.execute(
            insert(Episode),
            [
                {
                    "id": f"{prefix}e{i:02d}",
                    "client_id": f"{prefix}c{i}",
                    "ehr_encounter_id": f"{prefix}e{i}",
                    "state": "in-community",
                    "encounter_json": "{}",
                    "created_at": AT + timedelta(hours=i // 2),
                    "updated_at": AT,
                }
                for i in range(count)
            ],
        )
        if ended:
            await session.execute(
                insert(EpisodeClosure),
                [
                    {"episode_id": f"{prefix}e{i:02d}", "ended_at": AT + timedelta(days=40), "reason": "completed"}
                    for i in sorted(ended)
                ],
            )
        await session.commit()


async def walk(client: httpx.AsyncClient, headers: dict[str, str], first: str) -> tuple[list[dict[str, object]], int]:
    """Every page from `first` on, following the Link header; the episodes and the number of pages."""
    seen: list[dict[str, object]] = []
    url: str | None = first
    pages = 0
    while url is not None:
        pages += 1
        assert pages < 20, "the Link header never ended"
        answer = await client.get(url, headers=headers)
        assert answer.status_code == 200, answer.text
        seen += answer.json()
        link = answer.headers.get("link")
        url = None if link is None else NEXT.fullmatch(link).group(1)  # type: ignore[union-attr]
    return seen, pages


async def test_a_coordinator_walks_the_sites_episodes_page_by_page(
    client: httpx.AsyncClient, app: FastAPI, auth: Callable[..., dict[str, str]]
) -> None:
    await add_site(app.state.sessions, "north", SiteSpec(name="North Hospital"))
    await fill(app, "default", "", 8, ended={1, 2, 6})
    await fill(app, "north", "n", 3, ended=set())
    headers = auth(Role.COORDINATOR, "c")

    seen, pages = await walk(client, headers, "/api/episodes?limit=3")
    assert [e["id"] for e in seen] == [f"e{i:02d}" for i in range(8)]  # oldest first, ties by id, each once
    assert pages == 3
    by_id = {e["id"]: e for e in seen}
    assert by_id["e01"]["end_reason"] == "completed"
    assert by_id["e01"]["ended_at"] == "2025-04-12T09:00:00Z"
    assert by_id["e00"]["ended_at"] is None
    assert by_id["e00"]["end_reason"] is None

    open_ones, _ = await walk(client, headers, "/api/episodes?limit=2&ended=false")
    assert [e["id"] for e in open_ones] == ["e00", "e03", "e04", "e05", "e07"]
    ended, _ = await walk(client, headers, "/api/episodes?limit=2&ended=true")
    assert [e["id"] for e in ended] == ["e01", "e02", "e06"]

    whole = await client.get("/api/episodes", headers=headers)  # one page holds them all: no Link
    assert [e["id"] for e in whole.json()] == [f"e{i:02d}" for i in range(8)]
    assert "link" not in whole.headers

    north, _ = await walk(client, auth(Role.COORDINATOR, "c", site="north"), "/api/episodes?limit=1")
    assert [e["id"] for e in north] == ["ne00", "ne01", "ne02"]

    single = await client.get("/api/episodes/e06", headers=headers)
    assert (single.json()["ended_at"], single.json()["end_reason"]) == ("2025-04-12T09:00:00Z", "completed")


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("after=yesterday%7Ce01", "after"),
        ("after=2025-03-03T09:00:00%7Ce01", "after"),  # no time zone
        ("after=2025-03-03T09:00:00%2B00:00%7Ce%2001", "after"),
        ("after=9999-12-31T23:59:59-05:00%7Ce01", "after"),  # past year 9999 in UTC
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("ended=perhaps", "ended"),
    ],
)
async def test_a_page_the_server_did_not_link_to_is_a_400_naming_the_parameter(
    client: httpx.AsyncClient, auth: Callable[..., dict[str, str]], query: str, named: str
) -> None:
    answer = await client.get(f"/api/episodes?{query}", headers=auth(Role.COORDINATOR, "c"))
    assert answer.status_code == 400, answer.text
    [issue] = answer.json()["issue"]
    assert named in issue["expression"][0], issue
