"""The desk's client list after years of the program: every open episode at once, the ended ones a page at a time
(the latest first, each exactly once however the pages are walked), never another site's, and Today counting only
the open ones. Before, the list and Today read every episode the site ever had (3.8 s and 2.7 s with 20,000)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import insert

from service.app import desk
from service.app.sites import SiteSpec, add_site
from service.store import web
from service.store.matching import EpisodeClosure
from service.store.models import Client, Episode
from tests.web.test_web_app import sign_in

AT = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)
EPISODE_LINK = re.compile(r'href="/desk/episodes/([^"]+)"')
OLDER_LINK = re.compile(r'href="(/desk/clients\?before=[^"]+)"')


def patient(name: str) -> str:
    return json.dumps({"resourceType": "Patient", "name": [{"use": "usual", "given": [name]}]})


async def fill(app: FastAPI, site: str, prefix: str, open_count: int, ended_count: int) -> None:
    """Clients of the site with one episode each: `ended_count` the program ended (the higher the number, the
    later; changed in the opposite order)."""
    total = open_count + ended_count
    async with app.state.sessions() as session:
        await session.execute(
            insert(Client),
            [
                {
                    "id": f"{prefix}c{i}",
                    "site": site,
                    "ehr_patient_id": f"{prefix}c{i}",
                    "patient_json": patient(f"{prefix}Name{i}"),
                    "created_at": AT,
                    "updated_at": AT,
                }
                for i in range(total)
            ],
        )
        await session.execute(
            insert(Episode),
            [
                {
                    "id": f"{prefix}e{i}",
                    "client_id": f"{prefix}c{i}",
                    "ehr_encounter_id": f"{prefix}e{i}",
                    "state": "in-community",
                    "encounter_json": "{}",
                    "discharged_at": AT,
                    "created_at": AT,
                    "updated_at": AT + timedelta(days=30 - i),  # a late change does not move it in the list
                }
                for i in range(total)
            ],
        )
        await session.execute(
            insert(EpisodeClosure),
            [
                # Two ended at the same moment: the id orders them, and neither is lost.
                {"episode_id": f"{prefix}e{i}", "ended_at": AT + timedelta(hours=i // 2), "reason": "completed"}
                for i in range(ended_count)
            ],
        )
        await session.commit()


async def test_open_episodes_whole_and_ended_ones_a_page_at_a_time(
    browser: httpx.AsyncClient, dev_app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(desk, "ENDED_PAGE", 2)
    await add_site(dev_app.state.sessions, "north", SiteSpec(name="North Hospital"))
    await fill(dev_app, "default", "", open_count=3, ended_count=5)
    await fill(dev_app, "north", "n", open_count=1, ended_count=3)
    await sign_in(browser, "site:default")

    page = await browser.get("/desk/clients")
    assert page.status_code == 200, page.text
    first, ended = page.text.split("Ended episodes, the latest ended first")
    assert set(EPISODE_LINK.findall(first)) == {"e5", "e6", "e7"}  # every open one
    seen = EPISODE_LINK.findall(ended)
    assert seen == ["e4", "e3"]  # the latest ended first, the tie by id
    for _ in range(10):  # more pages than there are: a link that never ends fails below
        older = OLDER_LINK.search(page.text)
        if older is None:
            break
        page = await browser.get(older.group(1).replace("&amp;", "&"))
        assert page.status_code == 200, page.text
        assert "Older ended episodes" in page.text
        seen += EPISODE_LINK.findall(page.text)
    assert seen == ["e4", "e3", "e2", "e1", "e0"]  # each once, nothing of north's
    assert not any(link.startswith("n") for link in seen)

    # Filters list open episodes only (an ended one carries no flag); Today counts them the same way.
    waiting = await browser.get("/desk/clients?show=waiting")
    assert set(EPISODE_LINK.findall(waiting.text)) == {"e5", "e6", "e7"}
    today = {
        item.key: item.count for item in await desk.today(dev_app.state.sessions, dev_app.state.settings, "default")
    }
    assert today["waiting"] == 3


@pytest.mark.parametrize(
    "before",
    [
        "yesterday|e1",
        "2025-01-06T09:00:00|e1",  # no time zone
        "2025-01-06T09:00:00+00:00|e 1",
        "2025-01-06T09:00:00+00:00",
        "0001-01-01T00:00:00+05:00|e1",  # before year 1 in UTC
        "9999-12-31T23:59:59-05:00|e1",  # after 9999 in UTC
    ],
)
async def test_a_page_link_this_page_did_not_make_is_a_422_naming_it(browser: httpx.AsyncClient, before: str) -> None:
    await sign_in(browser, "site:default")
    answer = await browser.get("/desk/clients", params={"before": before})
    assert answer.status_code == 422
    assert "before" in answer.text


async def test_episodes_looked_up_by_their_ids_are_only_ever_the_sites_own(dev_app: FastAPI) -> None:
    # The ended page and the alerts page read their rows by id; the site is checked on each row found.
    await add_site(dev_app.state.sessions, "north", SiteSpec(name="North Hospital"))
    await fill(dev_app, "default", "", open_count=1, ended_count=1)
    await fill(dev_app, "north", "n", open_count=1, ended_count=1)
    async with dev_app.state.sessions() as session:
        found = await web.site_episodes(session, "default", ids={"e0", "e1", "ne0", "ne1"})
        assert sorted(episode.id for episode, *_ in found) == ["e0", "e1"]
        found = await web.site_episodes(session, "north", ended=True, ids={"e0", "e1", "ne0", "ne1"})
        assert [episode.id for episode, *_ in found] == ["ne0"]
