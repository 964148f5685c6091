"""The issue's story in a real browser: a coordinator signs in, sees a discharge arrive (a Da Vinci
notification), records the client's consent with the form and assigns the suggested peer; the peer signs in on a
phone-sized screen, reads only what the client consented to share, and logs a contact, which reaches the test
EHR as an Encounter exactly once. axe-core checks every page on the way; screenshots go to test-output/."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import httpx
import pytest
from playwright.async_api import Browser, Page, expect

from service.app.alerts import run_safety_net
from service.auth import Role
from service.settings import Settings
from service.store.db import create_engine, session_factory
from tests.browser.conftest import assert_accessible, screenshot
from tests.conftest import fixture_json
from tests.e2e.test_discharge_to_encounter import seed_ehr_with_the_stay
from tests.support.ehr import TestEhr
from tests.support.flow import ADMIT, DISCHARGE
from tests.support.server import LiveServer

pytestmark = pytest.mark.ehr
Auth = Callable[..., dict[str, str]]
CONTACT_KIND = "https://peerway.github.io/fhir/CodeSystem/peer-contact-kind"
DELIVERY_DEADLINE_S = 30.0


async def notify(server: LiveServer, auth: Auth, bundle: str) -> None:
    """The hospital's EHR sends a Da Vinci notification to the running Peerway."""
    headers = auth(Role.EHR_SYSTEM, "hospital", **{"Content-Type": "application/fhir+json"})
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}", timeout=30) as http:
        answer = await http.post("/fhir/$process-message", content=json.dumps(fixture_json(bundle)), headers=headers)
    assert answer.status_code == 200, answer.text


def peer_contacts_at_the_ehr(ehr: TestEhr) -> list[dict[str, object]]:
    return [
        e
        for e in ehr.search("Encounter")
        if any(c.get("system") == CONTACT_KIND for t in e.get("type", []) for c in t.get("coding", []))
    ]


async def run_the_safety_net(settings: Settings) -> None:
    """The worker's hourly check, run now against the server's database (not waiting an hour for it)."""
    engine = create_engine(settings.database_url)
    try:
        await run_safety_net(session_factory(engine), settings)
    finally:
        await engine.dispose()


async def sign_in_as(page: Page, base: str, label: str) -> None:
    await page.goto(f"{base}/signin")
    await assert_accessible(page)
    await page.get_by_label("Sign in as").select_option(label=label)
    await page.get_by_role("button", name="Sign in", exact=True).click()


async def test_discharge_consent_assignment_summary_and_contact_in_a_browser(
    chromium: Browser, peerway: LiveServer, auth: Auth, ehr: TestEhr, settings: Settings
) -> None:
    base = f"http://127.0.0.1:{peerway.port}"
    seed_ehr_with_the_stay(ehr)
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        registered = await http.post("/api/peers", json={"name": "Alex Morgan"}, headers=auth(Role.COORDINATOR, "c"))
    assert registered.status_code == 201, registered.text
    csp_errors: list[str] = []

    # --- the coordinator, at a desk ---
    desk = await chromium.new_context(viewport={"width": 1280, "height": 800})
    page = await desk.new_page()
    page.on("console", lambda m: csp_errors.append(m.text) if "Content Security Policy" in m.text else None)
    await sign_in_as(page, base, "Coordinator at default")
    await expect(page.get_by_role("heading", name="Today")).to_be_visible()
    new_discharges = page.locator('[data-today="new-discharge"] .count')
    await expect(new_discharges).to_have_text("0")

    await notify(peerway, auth, ADMIT)
    await notify(peerway, auth, DISCHARGE)
    await page.reload()
    await expect(new_discharges).to_have_text("1")
    await assert_accessible(page)
    await screenshot(page, "coordinator-today")

    await page.locator('[data-today="new-discharge"]').click()
    await assert_accessible(page)
    await page.get_by_role("link", name="Elden718 Halvorson124").click()
    await expect(page.get_by_text("No consent recorded")).to_be_visible()
    await assert_accessible(page)

    await page.get_by_label("Name").check()
    await page.get_by_label("Hospital stay").check()
    await page.get_by_role("button", name="Record consent").click()
    await expect(page.get_by_text("The client's assigned peer supporter may see: Name, Hospital stay")).to_be_visible()
    await page.get_by_role("button", name="Assign Alex Morgan").click()
    await expect(page.locator("[data-assigned-peer]")).to_have_text("Alex Morgan")
    await expect(page.get_by_role("heading", name="Why can the peer supporter (not) see this?")).to_be_visible()
    await assert_accessible(page)
    await screenshot(page, "coordinator-client")

    await page.get_by_role("link", name="Peers and caseloads").click()
    await assert_accessible(page)
    await run_the_safety_net(settings)  # the 2018 discharge: nobody in touch since
    await page.get_by_role("link", name="Alerts").click()
    await expect(page.get_by_text("No contact since discharge", exact=True)).to_be_visible()
    await assert_accessible(page)
    await screenshot(page, "coordinator-alerts")
    await page.get_by_role("link", name="Today").click()
    await expect(page.get_by_role("heading", name="Oldest safety-net alerts")).to_be_visible()
    await assert_accessible(page)
    await page.locator('[data-today="failed-writes"]').click()
    await expect(page.get_by_role("heading", name="Write-backs and EHR channels")).to_be_visible()
    await assert_accessible(page)
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_text("You are signed out.")).to_be_visible()
    await desk.close()

    # --- the peer, on a phone ---
    phone = await chromium.new_context(viewport={"width": 360, "height": 740}, is_mobile=True, has_touch=True)
    page = await phone.new_page()
    page.on("console", lambda m: csp_errors.append(m.text) if "Content Security Policy" in m.text else None)
    await sign_in_as(page, base, "Peer supporter Alex Morgan")
    await expect(page.get_by_role("heading", name="My clients")).to_be_visible()
    await expect(page.get_by_role("link", name="Elden718 Halvorson124")).to_be_visible()
    await expect(page.get_by_text("555-903-1143")).to_have_count(0)  # contact details were not consented
    assert await page.evaluate("document.documentElement.scrollWidth") <= 360  # no sideways scrolling
    await assert_accessible(page)
    await screenshot(page, "peer-clients")

    await page.get_by_role("link", name="Elden718 Halvorson124").click()
    await page.get_by_label("Phone or video").check()
    await page.get_by_label("Minutes").fill("30")
    await page.get_by_role("button", name="Log contact").click()
    await expect(page.get_by_text("Contact logged.")).to_be_visible()
    assert await page.evaluate("document.documentElement.scrollWidth") <= 360
    await assert_accessible(page)

    # The worker writes it to the hospital's EHR: exactly one Encounter, and the peer's screen says so.
    deadline = time.monotonic() + DELIVERY_DEADLINE_S
    while not peer_contacts_at_the_ehr(ehr) and time.monotonic() < deadline:
        await page.wait_for_timeout(200)
    await page.reload()
    await expect(page.get_by_text("In the hospital record")).to_be_visible()
    await screenshot(page, "peer-contact")
    assert len(peer_contacts_at_the_ehr(ehr)) == 1

    # Logged by mistake: the peer cancels it, and the hospital's record says so too (entered-in-error).
    await page.get_by_text("Correct", exact=True).click()
    await page.get_by_role("button", name="Cancel this contact").click()
    await expect(page.get_by_text("Cancelled", exact=True)).to_be_visible()
    deadline = time.monotonic() + DELIVERY_DEADLINE_S
    while peer_contacts_at_the_ehr(ehr)[0]["status"] != "entered-in-error" and time.monotonic() < deadline:
        await page.wait_for_timeout(200)
    cancelled = peer_contacts_at_the_ehr(ehr)
    assert [e["status"] for e in cancelled] == ["entered-in-error"]
    assert csp_errors == []
    await phone.close()
