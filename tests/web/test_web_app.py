"""The people's web app over ASGI: sign-in, session security, CSRF, and what coordinators and peers do with
it, through the same use cases as the API (the browser tests in tests/browser drive the same pages in Chromium)."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from service.app import web_sessions
from service.auth import Role
from service.settings import Settings
from service.store.db import create_engine, session_factory
from service.store.jobs import Job
from service.store.models import AuditRecord, Contact
from tests.support.consents import peer_consent
from tests.support.delivery import deliver
from tests.support.ehr import TestEhr
from tests.support.flow import ADMIT, DISCHARGE, assign, client_with_contact, discharge, register_peer

Auth = Callable[..., dict[str, str]]
DAY = (datetime.now(UTC) - timedelta(days=2)).date().isoformat()  # contact times are refused a year back
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found is not None, html
    return found.group(1)


async def sign_in(browser: httpx.AsyncClient, who: str) -> None:
    page = await browser.get("/signin")
    assert page.status_code == 200, page.text
    answer = await browser.post("/signin/dev", data={"who": who, "csrf": csrf_of(page.text)})
    assert answer.status_code == 303, answer.text


async def count(settings: Settings, model: type[Contact] | type[Job] | type[AuditRecord]) -> int:
    engine = create_engine(settings.database_url)
    try:
        async with session_factory(engine)() as session:
            return int((await session.execute(select(func.count()).select_from(model))).scalar_one())
    finally:
        await engine.dispose()


async def test_pages_need_a_session_and_carry_a_strict_policy(browser: httpx.AsyncClient) -> None:
    assert (await browser.get("/")).headers["location"] == "/signin"
    assert (await browser.get("/desk")).headers["location"] == "/signin"
    assert (await browser.get("/peer")).headers["location"] == "/signin"
    page = await browser.get("/signin")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["cache-control"] == "no-store"
    cookie = page.headers["set-cookie"].lower()
    assert "httponly" in cookie
    assert "samesite=lax" in cookie
    assert "secure" not in cookie  # development over plain http; elsewhere __Host- and Secure (below)
    assert "Coordinator at" in page.text  # the dev chooser offers the default site's coordinator


async def test_a_form_without_this_sessions_token_is_refused(browser: httpx.AsyncClient) -> None:
    await browser.get("/signin")
    refused = await browser.post("/signin/dev", data={"who": "site:default", "csrf": "forged"})
    assert refused.status_code == 403
    assert "out of date" in refused.text
    assert (await browser.get("/desk")).status_code == 303  # still not signed in


async def test_sign_out_ends_the_session_on_the_server(browser: httpx.AsyncClient) -> None:
    await sign_in(browser, "site:default")
    today = await browser.get("/desk")
    assert today.status_code == 200
    assert "Today" in today.text
    stolen = dict(browser.cookies)
    out = await browser.post("/signout", data={"csrf": csrf_of(today.text)})
    assert out.headers["location"] == "/signin?ended=1"
    browser.cookies.clear()
    browser.cookies.update(stolen)  # a copy of the cookie taken before sign-out opens nothing
    assert (await browser.get("/desk")).headers["location"] == "/signin"


async def test_the_web_routes_are_not_in_the_openapi_document(api: httpx.AsyncClient) -> None:
    paths = (await api.get("/openapi.json")).json()["paths"]
    assert not [p for p in paths if p == "/" or p.startswith(("/signin", "/desk", "/peer", "/static"))]


async def test_the_development_sign_in_is_refused_outside_development(app: FastAPI, settings: Settings) -> None:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://peerway.test") as client:
        page = await client.get("/signin")
        assert "Development sign-in" not in page.text
        assert "set-cookie" not in page.headers  # no form on the page needs a CSRF token, so nothing is stored
        # Even a browser with a session and its valid CSRF token is refused.
        cookie = await web_sessions.anonymous(app.state.sessions)
        client.cookies.set("__Host-peerway", cookie)
        session = await web_sessions.current(app.state.sessions, settings, cookie)
        assert session is not None
        refused = await client.post("/signin/dev", data={"who": "site:default", "csrf": session.csrf})
        assert refused.status_code == 403
        assert (await client.get("/desk")).headers["location"] == "/signin"


async def test_coordinator_records_consent_assigns_and_the_peer_logs_a_contact_once(
    browser: httpx.AsyncClient, api: httpx.AsyncClient, auth: Auth, settings: Settings
) -> None:
    await discharge(api, auth, ADMIT)
    episode = await discharge(api, auth, DISCHARGE)
    peer = await register_peer(api, auth, "Alex Morgan")

    await sign_in(browser, "site:default")
    today = (await browser.get("/desk")).text
    assert re.search(r'data-today="new-discharge"><span class="count">1<', today)
    assert re.search(r'data-today="waiting"><span class="count">1<', today)
    waiting = await browser.get("/desk/clients?show=waiting")
    assert f"/desk/episodes/{episode['id']}" in waiting.text
    assert "Nobody yet" in waiting.text

    page = await browser.get(f"/desk/episodes/{episode['id']}")
    assert page.status_code == 200, page.text
    assert "No consent recorded" in page.text
    assert "Alex Morgan" in page.text
    csrf = csrf_of(page.text)
    recorded = await browser.post(
        f"/desk/episodes/{episode['id']}/consent",
        data={"csrf": csrf, "category": ["preferred-name", "admission-discharge"], "who": "assigned",
              "until": "2099-12-31"},
    )  # fmt: skip
    assert recorded.status_code == 303, recorded.text
    assigned = await browser.post(f"/desk/episodes/{episode['id']}/assign", data={"csrf": csrf, "peer": peer["id"]})
    assert assigned.status_code == 303, assigned.text
    page = await browser.get(f"/desk/episodes/{episode['id']}")
    assert "The client&#39;s assigned peer supporter may see: Name, Hospital stay" in page.text
    assert "Why can the peer supporter (not) see this?" in page.text
    # A screen reader's list of buttons says which consent each Withdraw is for.
    assert re.search(r'aria-label="Withdraw this consent of \d{4}-\d\d-\d\d[^"]*">Withdraw this consent<', page.text)

    # The peer, on their phone.
    await browser.post("/signout", data={"csrf": csrf})
    await sign_in(browser, f"peer:{peer['id']}")
    mine = await browser.get("/peer")
    assert mine.status_code == 200, mine.text
    assert "Hospital stay" in mine.text
    assert "Contact details" not in mine.text
    client_page = await browser.get(f"/peer/clients/{episode['client_id']}")
    form = {
        "csrf": csrf_of(client_page.text),
        "form_id": re.search(r'name="form_id" value="([^"]+)"', client_page.text).group(1),  # type: ignore[union-attr]
        "kind": "phone-video",
        "when": f"{DAY}T14:30",
        "minutes": "45",
        "tz_offset": "300",
    }
    for _ in range(2):  # a double tap records it once
        logged = await browser.post(f"/peer/clients/{episode['client_id']}/contacts", data=form)
        assert logged.status_code == 303, logged.text
    assert await count(settings, Contact) == 1
    text = (await browser.get(f"/peer/clients/{episode['client_id']}")).text
    assert "Phone or video" in text
    assert f"{DAY} 19:30 UTC" in text
    assert f'aria-label="Cancel this contact of {DAY} 19:30 UTC">Cancel this contact<' in text
    assert f'aria-label="Save correction of the contact of {DAY} 19:30 UTC">Save correction<' in text
    assert "On its way to the hospital record" in text

    contact_id = re.search(r"/peer/contacts/([^/]+)/cancel", text).group(1)  # type: ignore[union-attr]
    cancelled = await browser.post(
        f"/peer/contacts/{contact_id}/cancel",
        data={"csrf": csrf_of(text), "version": "1", "client_id": episode["client_id"]},
    )
    assert cancelled.status_code == 303, cancelled.text
    assert "Cancelled" in (await browser.get(f"/peer/clients/{episode['client_id']}")).text


async def test_a_peer_sees_nothing_of_a_client_who_is_not_theirs(
    browser: httpx.AsyncClient, api: httpx.AsyncClient, auth: Auth
) -> None:
    episode = await discharge(api, auth, DISCHARGE)
    mine, other = await register_peer(api, auth, "Alex Morgan"), await register_peer(api, auth, "Sam Other")
    await assign(api, auth, episode["id"], mine["id"])
    await api.post(
        "/fhir/Consent", json=peer_consent(episode["patient"], ["preferred-name"]), headers=auth(Role.COORDINATOR, "c")
    )
    await sign_in(browser, f"peer:{other['id']}")
    assert "No client is assigned to you" in (await browser.get("/peer")).text
    answer = await browser.get(f"/peer/clients/{episode['client_id']}")
    assert answer.status_code == 404
    unknown = await browser.get("/peer/clients/no-such-client")
    assert unknown.status_code == 404
    assert answer.text.replace(episode["client_id"], "X") == unknown.text.replace("no-such-client", "X")


async def test_a_peer_cannot_cancel_anothers_contact_and_the_refusal_is_logged(
    browser: httpx.AsyncClient, api: httpx.AsyncClient, auth: Auth, caplog: pytest.LogCaptureFixture
) -> None:
    _, owner, contact = await client_with_contact(api, auth)
    other = await register_peer(api, auth, "Sam Other")
    await sign_in(browser, f"peer:{other['id']}")
    page = await browser.get("/peer")
    caplog.set_level(logging.WARNING)
    refused = await browser.post(
        f"/peer/contacts/{contact['id']}/cancel", data={"csrf": csrf_of(page.text), "version": "1", "client_id": "x"}
    )
    assert refused.status_code == 404
    kept = await api.get(f"/fhir/Encounter/{contact['id']}", headers=auth(Role.PEER, owner["id"]))
    assert kept.json()["status"] == "finished"
    lines = [r.getMessage() for r in caplog.records if r.name == "service.app.refusals"]
    assert len(lines) == 1
    assert other["id"] in lines[0]
    assert f"Encounter/{contact['id']}" in lines[0]


async def test_a_peer_pauses_and_resumes_and_a_paused_peer_is_not_suggested(
    browser: httpx.AsyncClient, api: httpx.AsyncClient, auth: Auth
) -> None:
    episode = await discharge(api, auth, DISCHARGE)
    peer = await register_peer(api, auth, "Alex Morgan")
    await sign_in(browser, f"peer:{peer['id']}")
    page = await browser.get("/peer")
    assert "You are taking new clients." in page.text
    await browser.post("/peer/status", data={"csrf": csrf_of(page.text), "paused": "true"})
    page = await browser.get("/peer")
    assert "You are paused" in page.text

    await browser.post("/signout", data={"csrf": csrf_of(page.text)})
    await sign_in(browser, "site:default")
    client_page = (await browser.get(f"/desk/episodes/{episode['id']}")).text
    assert "Assign Alex Morgan" not in client_page
    assert "Alex Morgan: paused" in client_page  # excluded, with why
    today = (await browser.get("/desk")).text
    assert re.search(r'data-today="peers-attention"><span class="count">1<', today)


async def test_withdraw_rematch_and_end_from_the_client_page(
    browser: httpx.AsyncClient, api: httpx.AsyncClient, auth: Auth
) -> None:
    episode = await discharge(api, auth, DISCHARGE)
    peer = await register_peer(api, auth, "Alex Morgan")
    await assign(api, auth, episode["id"], peer["id"])
    recorded = await api.post(
        "/fhir/Consent", json=peer_consent(episode["patient"], ["preferred-name"]), headers=auth(Role.COORDINATOR, "c")
    )
    consent_id = recorded.json()["id"]
    await sign_in(browser, "site:default")
    url = f"/desk/episodes/{episode['id']}"
    page = (await browser.get(url)).text
    assert "Status: active" in page
    assert re.search(r"<td>Name</td><td>Shared</td>", page)
    withdrawn = await browser.post(
        f"/desk/consents/{consent_id}/withdraw", data={"csrf": csrf_of(page), "episode": episode["id"]}
    )
    assert withdrawn.status_code == 303, withdrawn.text
    page = (await browser.get(url)).text
    assert "Status: inactive" in page
    assert re.search(r"<td>Name</td><td>Not shared</td>", page)

    rematched = await browser.post(f"{url}/rematch", data={"csrf": csrf_of(page), "reason": "client-request"})
    assert rematched.status_code == 303, rematched.text
    page = (await browser.get(url)).text
    assert "Nobody yet" in page
    assert "Assignment ended" in page
    ended = await browser.post(f"{url}/end", data={"csrf": csrf_of(page), "reason": "completed"})
    assert ended.status_code == 303, ended.text
    page = (await browser.get(url)).text
    assert "Episode ended (completed)" in page
    assert "Record consent" in page  # a new consent may still be recorded; matching is gone
    assert "Suggested peer supporters" not in page


async def test_bad_input_is_a_page_naming_the_field_never_a_server_error(
    browser: httpx.AsyncClient, api: httpx.AsyncClient, auth: Auth
) -> None:
    episode = await discharge(api, auth, DISCHARGE)
    peer = await register_peer(api, auth, "Alex Morgan")
    await assign(api, auth, episode["id"], peer["id"])
    await sign_in(browser, f"peer:{peer['id']}")
    page = (await browser.get(f"/peer/clients/{episode['client_id']}")).text
    base = {"csrf": csrf_of(page), "form_id": "abcdefgh12", "kind": "phone-video", "when": f"{DAY}T14:30"}
    for bad, field in (
        ({"minutes": "0"}, "minutes"),
        ({"minutes": "30", "kind": "séance"}, "kind"),
        ({"minutes": "30", "when": "yesterday"}, "when"),
    ):
        answer = await browser.post(f"/peer/clients/{episode['client_id']}/contacts", data={**base, **bad})
        assert answer.status_code == 422, answer.text
        assert f"{field}:" in answer.text
    await browser.post("/signout", data={"csrf": csrf_of(page)})
    await sign_in(browser, "site:default")
    page = (await browser.get(f"/desk/episodes/{episode['id']}")).text
    empty = await browser.post(
        f"/desk/episodes/{episode['id']}/consent", data={"csrf": csrf_of(page), "until": "2099-01-01"}
    )
    assert empty.status_code == 422
    assert "category: Choose at least one thing to share." in empty.text
    assert f'<a href="/desk/episodes/{episode["id"]}">Go back</a>' in empty.text  # to the client, not home
    past = await browser.post(
        f"/desk/episodes/{episode['id']}/consent",
        data={"csrf": csrf_of(page), "until": "2020-01-01", "category": "preferred-name"},
    )
    assert past.status_code == 422
    assert "until: Choose today or a later day." in past.text
    assert (await browser.get("/desk/clients?show=everything")).status_code == 422
    assert (await browser.get("/desk/episodes/no-such-episode")).status_code == 404


async def test_a_peer_corrects_a_contact_and_a_stale_form_is_refused(
    browser: httpx.AsyncClient, api: httpx.AsyncClient, auth: Auth, settings: Settings
) -> None:
    episode = await discharge(api, auth, DISCHARGE)
    peer = await register_peer(api, auth, "Alex Morgan")
    await assign(api, auth, episode["id"], peer["id"])
    await sign_in(browser, f"peer:{peer['id']}")
    url = f"/peer/clients/{episode['client_id']}"
    page = (await browser.get(url)).text
    form = {"csrf": csrf_of(page), "form_id": "form-0001", "kind": "community-visit", "when": f"{DAY}T10:00",
            "minutes": "60"}  # fmt: skip
    queued = await count(settings, Job)  # the assignment's CareTeam write
    assert (await browser.post(f"{url}/contacts", data=form)).status_code == 303
    page = (await browser.get(url)).text
    contact_id = re.search(r"/peer/contacts/([^/]+)/correct", page).group(1)  # type: ignore[union-attr]
    correction = {"csrf": csrf_of(page), "version": "1", "client_id": episode["client_id"], "kind": "phone-video",
                  "when": f"{DAY}T10:00", "minutes": "20"}  # fmt: skip
    corrected = await browser.post(f"/peer/contacts/{contact_id}/correct", data=correction)
    assert corrected.status_code == 303, corrected.text
    page = (await browser.get(url)).text
    assert f"Phone or video</strong> · {DAY} 10:00 UTC · 20 min" in page
    assert 'name="version" value="2"' in page

    stale = await browser.post(f"/peer/contacts/{contact_id}/correct", data={**correction, "minutes": "90"})
    assert stale.status_code == 412  # the form showed version 1; version 2 is current
    assert "20 min" in (await browser.get(url)).text
    assert await count(settings, Job) == queued + 2  # the contact and its correction, each queued once


@pytest.mark.ehr
async def test_failed_write_backs_are_counted_listed_and_tried_again(
    browser: httpx.AsyncClient, api: httpx.AsyncClient, auth: Auth, settings: Settings, ehr: TestEhr
) -> None:
    await client_with_contact(api, auth)  # a CareTeam and an Encounter to write
    ehr.fault(status=422, count=2)
    assert (await deliver(settings, ehr)).dead == 2

    await sign_in(browser, "site:default")
    today = (await browser.get("/desk")).text
    assert re.search(r'data-today="failed-writes"><span class="count">2<', today)
    page = (await browser.get("/desk/deliveries")).text
    assert page.count(">Try again</button>") == 2
    assert page.count('aria-label="Try again: ') == 2  # each button says which write-back it retries
    assert "422" in page
    for item in re.findall(r"/desk/deliveries/(\d+)/replay", page):
        answer = await browser.post(f"/desk/deliveries/{item}/replay", data={"csrf": csrf_of(page)})
        assert answer.status_code == 303, answer.text
    assert (await deliver(settings, ehr)).delivered == 2
    assert "Every write-back reached the EHR." in (await browser.get("/desk/deliveries")).text
