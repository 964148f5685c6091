"""Signing in with the organization's OpenID Connect provider in Chromium, at the real test IdP (tests/idp).

The review found this blocked: the sign-in button was a form, and Chromium applies the page's CSP form-action 'self'
to the form's redirect to the provider. The button is now a link; the whole round trip runs under the same strict
policy, and after signing out the provider asks who it is again (prompt=login), as a shared computer needs."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, expect

from service.auth import Role
from tests.browser.conftest import assert_accessible
from tests.support.idp import TestIdp, run_test_idp
from tests.support.server import LiveServer, free_port, live_server

Auth = Callable[..., dict[str, str]]


@pytest.fixture
def served(tmp_path: Path, database_url: str, auth_keys_path: Path) -> Iterator[tuple[LiveServer, TestIdp, str]]:
    """Peerway on a port named in its base URL (the provider sends the browser back there), and the test IdP
    with Peerway's web app registered as a public client at its "hospital" issuer."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    config = {
        "hospital": {
            "clients": [{"client_id": "peerway-web", "redirect_uris": [f"{base}/signin/callback"]}],
            "accounts": [{"sub": "casey", "name": "Casey Coordinator"}],
            "audience": "peerway",
        }
    }
    with (
        run_test_idp(config) as idp,
        live_server(
            tmp_path,
            env="dev",
            port=port,
            public_base_url=base,
            database_url=database_url,
            auth_keys_path=auth_keys_path,
        ) as server,
    ):
        yield server, idp, base


async def test_a_coordinator_signs_in_with_the_provider_in_chromium(
    chromium: Browser, served: tuple[LiveServer, TestIdp, str], auth: Auth
) -> None:
    _, idp, base = served
    admin = auth(Role.ADMINISTRATOR, "root")
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        issuer = {"id": "hospital", "issuer": idp.issuer("hospital"), "sites": ["default"]}
        assert (await http.post("/api/admin/issuers", json=issuer, headers=admin)).status_code == 201
        casey = {"issuer": "hospital", "subject": "casey", "role": "coordinator", "site": "default", "name": "Casey"}
        registered = await http.post("/api/admin/people", json=casey, headers=admin)
        assert registered.status_code == 201, registered.text

    context = await chromium.new_context(viewport={"width": 1280, "height": 800})
    try:
        page = await context.new_page()
        csp_errors: list[str] = []
        page.on("console", lambda m: csp_errors.append(m.text) if "Content Security Policy" in m.text else None)
        await page.goto(f"{base}/signin")
        await assert_accessible(page)
        await page.get_by_text("Sign in with hospital").click()
        await expect(page.get_by_role("heading", name="Test IdP hospital")).to_be_visible()
        await page.get_by_role("button", name="Casey Coordinator (casey)").click()
        await expect(page.get_by_role("heading", name="Today")).to_be_visible()
        await expect(page.get_by_text("Signed in as Casey")).to_be_visible()
        assert page.url == f"{base}/desk"

        await page.get_by_role("button", name="Sign out").click()
        await expect(page.get_by_text("You are signed out.")).to_be_visible()
        # The provider still has Casey's session, but asks again: the next person at this computer is not Casey.
        await page.get_by_text("Sign in with hospital").click()
        await expect(page.get_by_role("heading", name="Test IdP hospital")).to_be_visible()
        assert csp_errors == []
    finally:
        await context.close()
