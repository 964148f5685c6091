"""The outside security review of the web app (issue 16), one test per finding: each fails with the finding back.

The development chooser only on a loopback address (or when asked for), dev sessions dead outside dev, security
headers on redirects too, form input that used to end in a 500, no client name in the window title (browser
history), a link to the callback that cannot sign anyone out, a second site's coordinator held to their site, and
sessions that end when left idle but can always be signed out of."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from fastapi import FastAPI
from pydantic import ValidationError
from sqlalchemy import func, select, update

from service.app import web_sessions
from service.app.sites import SiteSpec, add_site
from service.main import create_app
from service.settings import Settings
from service.store.web import WebSession
from service.web.desk import consent_default_until
from tests.support.flow import ADMIT, assign, discharge, register_peer
from tests.web.test_web_app import csrf_of, sign_in

Auth = Callable[..., dict[str, str]]
FORM_ID = re.compile(r'name="form_id" value="([^"]+)"')


async def _expire_sessions(app: FastAPI, **values: datetime) -> None:
    """Stand in for the clock: move every session's deadlines as if the time had passed."""
    async with app.state.sessions() as session:
        await session.execute(update(WebSession).values(**values))
        await session.commit()


async def _deadlines(app: FastAPI) -> list[tuple[datetime, datetime]]:
    async with app.state.sessions() as session:
        rows = (await session.execute(WebSession.__table__.select().where(WebSession.role.is_not(None)))).all()
    return [(row.created_at, row.expires_at) for row in rows]


# --- the development chooser ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "offered"),
    [
        ({}, True),  # `make run`: 127.0.0.1, base URL from it
        ({"host": "localhost"}, True),
        ({"host": "::1", "public_base_url": "http://[::1]:8000"}, True),
        ({"host": "0.0.0.0"}, False),  # noqa: S104 - reachable from the network
        ({"public_base_url": "https://peerway.example.org"}, False),  # behind a public proxy
        ({"host": "0.0.0.0", "web_dev_signin": True}, True),  # noqa: S104 - asked for explicitly
        ({"env": "test"}, False),
    ],
)
def test_the_development_chooser_needs_dev_mode_and_a_loopback_address(changes: dict[str, Any], offered: bool) -> None:
    assert Settings(**{"env": "dev", **changes}, _env_file=None).dev_sign_in is offered


def test_asking_for_the_development_chooser_outside_dev_is_refused_at_start() -> None:
    with pytest.raises(ValidationError, match="PEERWAY_WEB_DEV_SIGNIN"):
        Settings(env="prod", web_dev_signin=True, metrics_token="x" * 32, _env_file=None)


@pytest.fixture
async def public_dev_app(settings: Settings) -> AsyncIterator[FastAPI]:
    """Dev mode (the default) served under a public name: what the review found offering passwordless sign-in."""
    application = create_app(settings.model_copy(update={"env": "dev", "public_base_url": "http://peerway.example"}))
    async with application.router.lifespan_context(application):
        yield application


async def test_a_dev_mode_service_on_a_public_address_offers_no_passwordless_sign_in(public_dev_app: FastAPI) -> None:
    transport = httpx.ASGITransport(app=public_dev_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://peerway.example") as browser:
        page = await browser.get("/signin")
        assert "Development sign-in" not in page.text
        cookie = await web_sessions.anonymous(public_dev_app.state.sessions)
        browser.cookies.set("peerway", cookie)
        session = await web_sessions.current(public_dev_app.state.sessions, public_dev_app.state.settings, cookie)
        assert session is not None  # a valid CSRF token, and still no development sign-in
        refused = await browser.post("/signin/dev", data={"who": "site:default", "csrf": session.csrf})
        assert refused.status_code == 403
        assert (await browser.get("/desk")).headers["location"] == "/signin"


async def test_a_development_session_opens_nothing_once_the_service_is_out_of_dev(
    browser: httpx.AsyncClient, settings: Settings
) -> None:
    await sign_in(browser, "site:default")
    assert (await browser.get("/desk")).status_code == 200
    cookie = browser.cookies["peerway"]
    # The same database, served in test mode (over https, so the cookie has its __Host- name).
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="https://peerway.test") as other:
            other.cookies.set("__Host-peerway", cookie)
            assert (await other.get("/desk")).headers["location"] == "/signin"


# --- headers, titles, the callback ---------------------------------------------------------------------------


async def test_redirects_carry_the_security_headers_too(browser: httpx.AsyncClient) -> None:
    for path in ("/", "/desk"):  # a plain redirect, and the one a lost session gets
        answer = await browser.get(path)
        assert answer.status_code == 303
        assert "form-action 'self'" in answer.headers["content-security-policy"]
        assert answer.headers["cache-control"] == "no-store"
        assert answer.headers["x-frame-options"] == "DENY"
        assert answer.headers["referrer-policy"] == "no-referrer"


async def test_a_link_to_the_sign_in_callback_signs_nobody_out(browser: httpx.AsyncClient) -> None:
    await sign_in(browser, "site:default")
    for query in ("?error=access_denied", "?state=x", ""):
        assert (await browser.get(f"/signin/callback{query}")).status_code == 401
    assert (await browser.get("/desk")).status_code == 200


async def test_a_client_page_title_names_no_client(
    browser: httpx.AsyncClient, api: httpx.AsyncClient, auth: Auth
) -> None:
    episode = await discharge(api, auth, ADMIT)
    await sign_in(browser, "site:default")
    page = await browser.get(f"/desk/episodes/{episode['id']}")
    assert page.status_code == 200
    assert "<title>Client · Peerway</title>" in page.text  # browser history keeps titles


# --- input that ended in a 500 ------------------------------------------------------------------------------


async def peer_at_their_client(browser: httpx.AsyncClient, api: httpx.AsyncClient, auth: Auth) -> tuple[str, str]:
    """A peer assigned to a discharged client, signed in on that client's page: its URL and HTML."""
    episode = await discharge(api, auth, ADMIT)
    peer = await register_peer(api, auth, "Alex Morgan")
    await assign(api, auth, episode["id"], peer["id"])
    await sign_in(browser, f"peer:{peer['id']}")
    url = f"/peer/clients/{episode['client_id']}"
    return url, (await browser.get(url)).text


async def test_contact_times_outside_a_sane_window_are_refused_naming_the_field(
    browser: httpx.AsyncClient, api: httpx.AsyncClient, auth: Auth
) -> None:
    url, page = await peer_at_their_client(browser, api, auth)
    now = datetime.now(UTC)
    found = FORM_ID.search(page)
    assert found is not None
    form = {"csrf": csrf_of(page), "form_id": found.group(1), "kind": "phone-video", "minutes": "1440"}
    for when, offset in [
        ("9999-12-31T23:59", "1440"),  # overflowed datetime
        ("0001-01-01T00:00", "-1440"),
        ((now + timedelta(days=3)).strftime("%Y-%m-%dT%H:%M"), "0"),
        ((now - timedelta(days=400)).strftime("%Y-%m-%dT%H:%M"), "0"),
    ]:
        answer = await browser.post(f"{url}/contacts", data={**form, "when": when, "tz_offset": offset})
        assert answer.status_code == 422, (when, answer.text)
        assert "when:" in answer.text
    yesterday = (now - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    logged = await browser.post(f"{url}/contacts", data={**form, "when": yesterday})
    assert logged.status_code == 303, logged.text


@pytest.fixture
async def program_in_india(settings: Settings) -> AsyncIterator[FastAPI]:
    """A program whose zone (PEERWAY_WEB_TIME_ZONE) is Asia/Kolkata: UTC+05:30 all year, no daylight saving."""
    changes = {"env": "dev", "web_dev_signin": True, "web_time_zone": "Asia/Kolkata"}
    application = create_app(settings.model_copy(update=changes))
    async with application.router.lifespan_context(application):
        yield application


async def test_a_contact_time_is_read_in_the_browsers_zone_or_else_the_programs(
    program_in_india: FastAPI, auth: Auth
) -> None:
    transport = httpx.ASGITransport(app=program_in_india)
    async with (
        httpx.AsyncClient(transport=transport, base_url="http://peerway.test") as browser,
        httpx.AsyncClient(transport=transport, base_url="http://peerway.test") as api,
    ):
        url, page = await peer_at_their_client(browser, api, auth)
        assert "(<span data-tz-name>Asia/Kolkata</span>)" in page  # without JavaScript the form says its zone
        found = FORM_ID.search(page)
        assert found is not None
        form = {"csrf": csrf_of(page), "kind": "phone-video", "minutes": "30"}
        day = (datetime.now(UTC) - timedelta(days=2)).date()

        # No JavaScript: no zone from the browser, so the program's zone, not UTC.
        logged = await browser.post(f"{url}/contacts", data={**form, "form_id": found.group(1), "when": f"{day}T14:30"})
        assert logged.status_code == 303, logged.text
        assert f"{day} 09:00 UTC" in (await browser.get(url)).text

        # The browser's zone (app.js): Toronto, with or without daylight saving on that day.
        toronto = datetime.combine(day, time(11, 15), tzinfo=ZoneInfo("America/Toronto")).astimezone(UTC)
        sent = {**form, "form_id": "second-contact", "when": f"{day}T11:15", "tz": "America/Toronto"}
        assert (await browser.post(f"{url}/contacts", data=sent)).status_code == 303
        assert f"{toronto:%Y-%m-%d %H:%M} UTC" in (await browser.get(url)).text

        unknown = await browser.post(f"{url}/contacts", data={**sent, "form_id": "third-contact", "tz": "Mars/Olympus"})
        assert unknown.status_code == 422
        assert "tz:" in unknown.text


def test_a_program_zone_that_does_not_exist_is_refused_at_start() -> None:
    with pytest.raises(ValidationError, match="PEERWAY_WEB_TIME_ZONE"):
        Settings(web_time_zone="Ontario/Toronto", _env_file=None)


async def test_replaying_a_delivery_with_an_impossible_number_names_it(browser: httpx.AsyncClient) -> None:
    await sign_in(browser, "site:default")
    csrf = csrf_of((await browser.get("/desk/deliveries")).text)
    for item in ("99999999999999999999", "0", "-1"):
        answer = await browser.post(f"/desk/deliveries/{item}/replay", data={"csrf": csrf})
        assert answer.status_code == 422, answer.text
        assert "item_id" in answer.text


def test_the_consent_forms_default_end_exists_on_29_february() -> None:
    assert consent_default_until(date(2028, 2, 29)) == date(2029, 2, 28)
    assert consent_default_until(date(2026, 12, 1)) == date(2027, 12, 1)


# --- sites ---------------------------------------------------------------------------------------------------


async def test_another_sites_coordinator_finds_no_such_client(
    browser: httpx.AsyncClient, api: httpx.AsyncClient, auth: Auth, dev_app: FastAPI
) -> None:
    episode = await discharge(api, auth, ADMIT)  # at site "default"
    await add_site(dev_app.state.sessions, "north", SiteSpec(name="North Hospital"))
    await sign_in(browser, "site:north")
    page = await browser.get(f"/desk/episodes/{episode['id']}")
    assert page.status_code == 404
    assert episode["id"] not in (await browser.get("/desk/clients")).text
    missing = await browser.get("/desk/episodes/no-such-episode")
    assert missing.status_code == 404
    assert page.text.replace(episode["id"], "") == missing.text.replace("no-such-episode", "")


# --- sessions ------------------------------------------------------------------------------------------------


async def test_a_session_ends_when_left_idle_and_moves_on_when_used(
    browser: httpx.AsyncClient, dev_app: FastAPI
) -> None:
    await sign_in(browser, "site:default")
    [(created, expires)] = await _deadlines(dev_app)
    assert expires - created <= timedelta(minutes=30, seconds=5)  # not the 8 h of the absolute limit

    # 25 minutes later (5 left): a page view gives another 30.
    await _expire_sessions(dev_app, expires_at=datetime.now(UTC) + timedelta(minutes=5))
    assert (await browser.get("/desk")).status_code == 200
    [(_, expires)] = await _deadlines(dev_app)
    assert expires > datetime.now(UTC) + timedelta(minutes=29)

    # Near the absolute end, use does not extend the session past 8 hours after sign-in.
    signed_in = datetime.now(UTC) - timedelta(hours=7, minutes=50)
    await _expire_sessions(dev_app, created_at=signed_in, expires_at=datetime.now(UTC) + timedelta(minutes=1))
    assert (await browser.get("/desk")).status_code == 200
    [(_, expires)] = await _deadlines(dev_app)
    assert expires <= signed_in + timedelta(hours=8)

    # Idle past the deadline: signed out.
    await _expire_sessions(dev_app, expires_at=datetime.now(UTC) - timedelta(seconds=1))
    assert (await browser.get("/desk")).headers["location"] == "/signin"


async def test_signing_out_of_a_session_that_already_ended_just_signs_out(
    browser: httpx.AsyncClient, dev_app: FastAPI
) -> None:
    await sign_in(browser, "site:default")
    csrf = csrf_of((await browser.get("/desk")).text)
    await _expire_sessions(dev_app, expires_at=datetime.now(UTC) - timedelta(seconds=1))
    out = await browser.post("/signout", data={"csrf": csrf})
    assert out.status_code == 303, out.text
    assert out.headers["location"] == "/signin?ended=1"
    assert "peerway" not in browser.cookies


async def test_a_live_session_is_not_signed_out_by_another_sites_form(browser: httpx.AsyncClient) -> None:
    await sign_in(browser, "site:default")
    assert (await browser.post("/signout", data={"csrf": "forged"})).status_code == 403
    assert (await browser.get("/desk")).status_code == 200


async def test_anonymous_visits_to_the_sign_in_page_store_nothing(app: FastAPI) -> None:
    """Outside development the sign-in page has no form (a provider's sign-in is a link): a flood of visits must
    not fill the session table."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://peerway.test") as client:
        for _ in range(3):
            page = await client.get("/signin")
            assert page.status_code == 200
            assert "set-cookie" not in page.headers
    async with app.state.sessions() as session:
        assert (await session.execute(select(func.count()).select_from(WebSession))).scalar_one() == 0
