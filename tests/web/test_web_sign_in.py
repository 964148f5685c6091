"""Signing in to the web app with the organization's OpenID Connect provider (tests/idp: panva's oidc-provider):
authorization code with PKCE, state and nonce kept server-side, the access token checked by the same
Gatekeeper as the API's, and the session ending as soon as the registry disables the person."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi import FastAPI

from service.auth import Role
from service.main import create_app
from service.settings import Settings
from tests.support.idp import TestIdp, run_test_idp
from tests.web.test_web_app import csrf_of

Auth = Callable[..., dict[str, str]]
BASE = "https://peerway.test"
WEB_APP = {"client_id": "peerway-web", "redirect_uris": [f"{BASE}/signin/callback"]}
CONFIG = {
    "hospital": {
        "clients": [WEB_APP],
        "accounts": [{"sub": "casey", "name": "Casey Coordinator"}, {"sub": "stranger", "name": "Not Registered"}],
        "audience": "peerway",
    }
}


@pytest.fixture(scope="module")
def _idp_server() -> Iterator[TestIdp]:
    with run_test_idp(CONFIG) as server:
        yield server


@pytest.fixture
def idp(_idp_server: TestIdp) -> TestIdp:
    _idp_server.reset()
    return _idp_server


@pytest.fixture
async def web_app(settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(Settings(**{**settings.model_dump(), "public_base_url": BASE}, _env_file=None))
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def browser(web_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=web_app), base_url=BASE) as client:
        yield client


@pytest.fixture
async def casey(browser: httpx.AsyncClient, auth: Auth, idp: TestIdp) -> str:
    """The hospital's provider is trusted for site default, and Casey is registered there as a coordinator."""
    admin = auth(Role.ADMINISTRATOR, "root")
    issuer = {"id": "hospital", "issuer": idp.issuer("hospital"), "sites": ["default"]}
    assert (await browser.post("/api/admin/issuers", json=issuer, headers=admin)).status_code == 201
    person = {"issuer": "hospital", "subject": "casey", "role": "coordinator", "site": "default", "name": "Casey"}
    answer = await browser.post("/api/admin/people", json=person, headers=admin)
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


async def start(browser: httpx.AsyncClient) -> str:
    page = await browser.get("/signin")
    assert "Sign in with hospital" in page.text
    answer = await browser.post("/signin/oidc", data={"issuer": "hospital", "csrf": csrf_of(page.text)})
    assert answer.status_code == 303, answer.text
    return str(answer.headers["location"])


def local(url: str) -> str:
    return urlsplit(url)._replace(scheme="", netloc="").geturl()


async def test_a_coordinator_signs_in_with_code_and_pkce_until_disabled(
    browser: httpx.AsyncClient, idp: TestIdp, casey: str, auth: Auth
) -> None:
    authorize = await start(browser)
    query = parse_qs(urlsplit(authorize).query)
    assert authorize.startswith(idp.issuer("hospital"))
    assert query["code_challenge_method"] == ["S256"]
    assert query["client_id"] == ["peerway-web"]
    assert {"state", "nonce", "code_challenge"} <= query.keys()
    back = idp.login(authorize, "casey")
    callback = await browser.get(local(back.location))
    assert callback.status_code == 303, callback.text
    assert "Secure" in callback.headers["set-cookie"]
    assert "__Host-peerway" in callback.headers["set-cookie"]
    today = await browser.get("/desk")
    assert today.status_code == 200
    assert "Signed in as Casey" in today.text

    # The provider's answer is good once: replayed, it opens nothing.
    assert (await browser.get(local(back.location))).status_code == 401

    # The registry disables Casey: the web session ends on the next request, as API tokens do.
    admin = auth(Role.ADMINISTRATOR, "root")
    disabled = await browser.put(f"/api/admin/people/{casey}/status", json={"status": "disabled"}, headers=admin)
    assert disabled.status_code == 200, disabled.text
    assert (await browser.get("/desk")).headers["location"] == "/signin"


async def test_an_answer_for_another_browser_or_person_opens_nothing(
    browser: httpx.AsyncClient, idp: TestIdp, casey: str
) -> None:
    back = idp.login(await start(browser), "casey")
    forged = local(back.location).replace(f"state={back.params['state']}", "state=forged")
    assert (await browser.get(forged)).status_code == 401
    assert (await browser.get("/desk")).headers["location"] == "/signin"

    # The right state with a code the provider never issued: its token endpoint refuses, and so does Peerway.
    back = idp.login(await start(browser), "casey")
    bogus = local(back.location).replace(f"code={back.params['code']}", "code=not-a-code")
    assert (await browser.get(bogus)).status_code == 401
    assert (await browser.get("/desk")).headers["location"] == "/signin"

    # Someone the provider knows but Peerway's registry does not.
    back = idp.login(await start(browser), "stranger")
    refused = await browser.get(local(back.location))
    assert refused.status_code == 403
    assert (await browser.get("/desk")).headers["location"] == "/signin"
