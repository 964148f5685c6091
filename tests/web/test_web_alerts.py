"""The safety net in the web app over ASGI: after a run (with a controlled clock) the coordinator's Today page
counts the site's alerts and its "no contact" tile is the safety net's own judgement at the site's threshold; the
alerts page names client, peer and days, and acknowledging or resolving one records who and when (a confirmed
drop-out ends the episode). Another site's alert is the same 404 as a missing one; a form without the session's
token changes nothing. A peer sees each client's week against the site's minimum, weeks under it marked."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
from fastapi import FastAPI

from service.app import registry
from service.app.alerts import run_safety_net
from service.app.sites import SiteSpec, add_site
from service.auth import Role
from tests.support.consents import peer_consent
from tests.support.flow import assign, discharge, peer_contact, register_peer
from tests.web.test_web_app import csrf_of, sign_in

Auth = Callable[..., dict[str, str]]
DAY = timedelta(days=1)


def tile(page: str, key: str) -> int:
    found = re.search(rf'data-today="{key}"><span class="count">(\d+)<', page)
    assert found is not None, page
    return int(found.group(1))


def alert_ids(page: str) -> dict[str, str]:
    """kind -> alert id, as the alerts page lists them."""
    return {kind: ident for ident, kind in re.findall(r'data-alert="([^"]+)" data-kind="([^"]+)"', page)}


async def run_at(dev_app: FastAPI, when: datetime) -> tuple[int, int]:
    run = await run_safety_net(dev_app.state.sessions, dev_app.state.settings, when)
    return run.opened, run.closed


async def test_an_alert_reaches_today_and_is_acknowledged_then_resolved_as_a_drop_out(
    dev_app: FastAPI, browser: httpx.AsyncClient, api: httpx.AsyncClient, auth: Auth
) -> None:
    episode = await discharge(api, auth)
    discharged = datetime.fromisoformat(episode["discharged_at"])
    await sign_in(browser, "site:default")
    today = (await browser.get("/desk")).text
    assert (tile(today, "alerts"), tile(today, "no-contact")) == (0, 0)
    assert "No contact in the 7 days since discharge" in today  # the site's threshold, the default here

    assert await run_at(dev_app, discharged + 2 * DAY) == (0, 0)  # too early for either rule
    assert await run_at(dev_app, discharged + 8 * DAY) == (2, 0)  # nobody assigned (3 days), nobody in touch (7)
    today = (await browser.get("/desk")).text
    assert (tile(today, "alerts"), tile(today, "no-contact")) == (2, 1)
    assert today.count("data-today-alert=") == 2  # listed under the tiles, oldest first
    assert "No contact since discharge:" in today
    silent = (await browser.get("/desk/clients?show=no-contact")).text
    assert f"/desk/episodes/{episode['id']}" in silent
    assert "No contact in the 7 days since discharge" in silent

    page = (await browser.get("/desk/alerts")).text
    ids = alert_ids(page)
    assert set(ids) == {"no-contact", "unassigned"}
    assert "No contact since discharge" in page
    assert "No peer supporter assigned" in page
    assert "Elden718 Halvorson124" in page  # the client's name, as the client list shows it
    assert "Nobody assigned" in page
    days = (datetime.now(UTC) - discharged).days
    assert f"<td>{days}</td>" in page  # days since discharge, as of now
    assert "Open since " + (discharged + 8 * DAY).strftime("%Y-%m-%d %H:%M UTC") in page

    answer = await browser.post(f"/desk/alerts/{ids['no-contact']}/acknowledge", data={"csrf": csrf_of(page)})
    assert answer.status_code == 303, answer.text
    page = (await browser.get("/desk/alerts")).text
    assert "Acknowledged by dev-coordinator-default at " in page
    assert tile((await browser.get("/desk")).text, "no-contact") == 1  # acknowledged: still to handle

    # A registered coordinator (shown by name) confirms the drop-out: the episode ends with that reason.
    await registry.add_issuer(dev_app.state.sessions, "org-idp", "https://idp.example.org", sites=("default",))
    jordan = await registry.add_person(
        dev_app.state.sessions, registry.NewPerson("org-idp", "jordan", Role.COORDINATOR, "Jordan Lee", site="default")
    )
    await browser.post("/signout", data={"csrf": csrf_of(page)})
    await sign_in(browser, f"person:{jordan.id}")
    page = (await browser.get("/desk/alerts")).text
    answer = await browser.post(
        f"/desk/alerts/{ids['no-contact']}/resolve",
        data={"csrf": csrf_of(page), "how": "end:no-contact", "note": "three calls, no answer"},
    )
    assert answer.status_code == 303, answer.text
    answer = await browser.post(f"/desk/alerts/{ids['unassigned']}/resolve", data={"csrf": csrf_of(page)})
    assert answer.status_code == 303, answer.text
    assert "No alert needs you." in (await browser.get("/desk/alerts")).text
    today = (await browser.get("/desk")).text
    assert (tile(today, "alerts"), tile(today, "no-contact")) == (0, 0)
    resolved = (await browser.get("/desk/alerts?show=resolved")).text
    assert "Resolved by Jordan Lee at " in resolved
    assert "(episode ended)" in resolved
    assert "three calls, no answer" in resolved
    assert "(handled)" in resolved
    assert "Episode ended (no-contact)" in (await browser.get(f"/desk/episodes/{episode['id']}")).text
    listed = await api.get("/api/alerts", params={"state": "resolved"}, headers=auth(Role.COORDINATOR, "c"))
    assert {(a["kind"], a["resolved_by"], a["resolution"]) for a in listed.json()} == {
        ("no-contact", jordan.id, "episode-ended"),
        ("unassigned", jordan.id, "coordinator"),
    }


async def test_the_desk_follows_the_sites_thresholds(
    dev_app: FastAPI, browser: httpx.AsyncClient, api: httpx.AsyncClient, auth: Auth
) -> None:
    episode = await discharge(api, auth)
    discharged = datetime.fromisoformat(episode["discharged_at"])
    wanted = {"no_contact_days": 10, "unassigned_days": 30, "weekly_minimum_minutes": 90, "ehr_flags": False}
    put = await api.put("/api/alerts/thresholds", json=wanted, headers=auth(Role.COORDINATOR, "c"))
    assert put.status_code == 200, put.text
    await sign_in(browser, "site:default")
    assert await run_at(dev_app, discharged + 8 * DAY) == (0, 0)  # 8 days: within this site's 10
    today = (await browser.get("/desk")).text
    assert "No contact in the 10 days since discharge" in today
    assert tile(today, "no-contact") == 0
    assert await run_at(dev_app, discharged + 10 * DAY) == (1, 0)
    assert tile((await browser.get("/desk")).text, "no-contact") == 1
    assert "this site&#39;s weekly minimum: 90" in (await browser.get("/desk/peers")).text


async def test_another_sites_alert_is_not_found_and_a_form_without_the_token_is_refused(
    dev_app: FastAPI, browser: httpx.AsyncClient, api: httpx.AsyncClient, auth: Auth
) -> None:
    episode = await discharge(api, auth)
    await run_at(dev_app, datetime.fromisoformat(episode["discharged_at"]) + 8 * DAY)
    await sign_in(browser, "site:default")
    page = (await browser.get("/desk/alerts")).text
    alert = alert_ids(page)["no-contact"]

    refused = await browser.post(f"/desk/alerts/{alert}/acknowledge", data={})
    assert refused.status_code == 403
    refused = await browser.post(f"/desk/alerts/{alert}/resolve", data={"csrf": "forged", "how": "close"})
    assert refused.status_code == 403
    assert "out of date" in refused.text
    bad = await browser.post(f"/desk/alerts/{alert}/resolve", data={"csrf": csrf_of(page), "how": "end:vanished"})
    assert bad.status_code == 422
    assert "how:" in bad.text
    assert "Open since" in (await browser.get("/desk/alerts")).text  # nothing changed

    await add_site(dev_app.state.sessions, "north", SiteSpec(name="North Hospital"))
    await browser.post("/signout", data={"csrf": csrf_of(page)})
    await sign_in(browser, "site:north")
    north = (await browser.get("/desk/alerts")).text
    assert "No alert needs you." in north
    assert "Elden718" not in north
    assert tile((await browser.get("/desk")).text, "alerts") == 0
    for action, form in (("acknowledge", {}), ("resolve", {"how": "end:no-contact"})):
        theirs = await browser.post(f"/desk/alerts/{alert}/{action}", data={"csrf": csrf_of(north), **form})
        missing = await browser.post(f"/desk/alerts/no-such-alert/{action}", data={"csrf": csrf_of(north), **form})
        assert theirs.status_code == missing.status_code == 404
        assert theirs.text.replace(alert, "X") == missing.text.replace("no-such-alert", "X")
    await browser.post("/signout", data={"csrf": csrf_of(north)})
    await sign_in(browser, "site:default")
    assert "Open since" in (await browser.get("/desk/alerts")).text  # still open at its own site


async def test_a_peer_sees_this_weeks_minutes_against_the_minimum_and_weeks_under_it_marked(
    browser: httpx.AsyncClient, api: httpx.AsyncClient, auth: Auth
) -> None:
    episode = await discharge(api, auth)
    peer = await register_peer(api, auth)
    await assign(api, auth, episode["id"], peer["id"])
    shared = peer_consent(episode["patient"], ["preferred-name", "admission-discharge"])
    recorded = await api.post("/fhir/Consent", json=shared, headers=auth(Role.COORDINATOR, "c"))
    assert recorded.status_code == 201, recorded.text
    discharged = datetime.fromisoformat(episode["discharged_at"])
    now = datetime.now(UTC)
    this_week = discharged + ((now - discharged) // timedelta(days=7)) * timedelta(days=7)
    for start, minutes in ((this_week, 25), (this_week - 7 * DAY + timedelta(hours=1), 75)):
        period = {"start": start.isoformat(), "end": (start + timedelta(minutes=minutes)).isoformat()}
        contact = peer_contact(episode["client_id"], minutes=minutes, period=period)
        posted = await api.post("/fhir/Encounter", json=contact, headers=auth(Role.PEER, peer["id"]))
        assert posted.status_code == 201, posted.text

    await sign_in(browser, f"peer:{peer['id']}")
    page = (await browser.get("/peer")).text
    assert "This week: 25 of 60 minutes" in page
    last_week = (this_week - 7 * DAY).date().isoformat()
    assert f"Week from {last_week}: 75 min</li>" in page  # met the minimum: not marked
    assert page.count("under the minimum") == 3  # the three weeks before it had nothing

    # Without the stay shared, the weeks (counted from discharge) are not shown.
    withdrawn = {**recorded.json(), "status": "inactive"}
    url = f"/fhir/Consent/{withdrawn['id']}"
    assert (await api.put(url, json=withdrawn, headers=auth(Role.COORDINATOR, "c"))).status_code == 200
    page = (await browser.get("/peer")).text
    assert "This week" not in page
    assert "which they have not shared with you" in page
