"""Signing in to the web app with the organization's OpenID Connect provider (tests/idp: panva's oidc-provider):
authorization code with PKCE, state and nonce kept server-side, the access token checked by the same
Gatekeeper as the API's, and the session ending as soon as the registry disables the person."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from urllib.parse import parse_qs, quote, urlsplit

import httpx
import pytest
from fastapi import FastAPI

from service.auth import Role, web_signin
from service.auth.jose import key_set
from service.errors import Unauthorized
from service.main import create_app
from service.settings import Settings
from tests.support.idp import TestIdp, run_test_idp

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
    assert 'href="/signin/oidc/hospital">Sign in with hospital' in page.text
    answer = await browser.get("/signin/oidc/hospital")
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


async def test_starting_a_sign_in_is_a_link_that_signs_nobody_out(
    browser: httpx.AsyncClient, idp: TestIdp, casey: str
) -> None:
    authorize = await start(browser)
    assert parse_qs(urlsplit(authorize).query)["prompt"] == ["login"]  # the provider asks who it is each time
    assert (await browser.get(local(idp.login(authorize, "casey").location))).status_code == 303
    # Signed in, another site's link to the start (or to the callback with an error) leaves the session alone.
    again = await browser.get("/signin/oidc/hospital")
    assert again.headers["location"] == "/"
    assert (await browser.get("/signin/callback?error=access_denied")).status_code == 401
    assert "Signed in as Casey" in (await browser.get("/desk")).text


async def test_an_unknown_provider_is_named(browser: httpx.AsyncClient) -> None:
    answer = await browser.get("/signin/oidc/nobody")
    assert answer.status_code == 404
    assert "issuer" in answer.text


async def test_a_state_is_good_for_one_answer_even_with_a_fresh_code(
    browser: httpx.AsyncClient, web_app: FastAPI, idp: TestIdp, casey: str
) -> None:
    authorize = await start(browser)
    pending = dict(browser.cookies)
    first, second = idp.login(authorize, "casey"), idp.login(authorize, "casey")  # two codes, one state
    assert first.code != second.code
    assert (await browser.get(local(first.location))).status_code == 303
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=web_app), base_url=BASE) as copy:
        copy.cookies.update(pending)  # the sign-in's cookie, kept by someone who saw the browser's traffic
        assert (await copy.get(local(second.location))).status_code == 401
        assert (await copy.get("/desk")).headers["location"] == "/signin"


async def test_an_answer_naming_another_provider_is_refused(
    browser: httpx.AsyncClient, idp: TestIdp, casey: str
) -> None:
    back = idp.login(await start(browser), "casey")
    assert back.params["iss"] == idp.issuer("hospital")  # RFC 9207: the provider says who answers
    mixed_up = local(back.location).replace(f"iss={quote(back.params['iss'], safe='')}", "iss=https%3A%2F%2Fevil.test")
    assert mixed_up != local(back.location)
    assert (await browser.get(mixed_up)).status_code == 401
    assert (await browser.get("/desk")).headers["location"] == "/signin"


def id_token(idp: TestIdp, **claims: object) -> str:
    """An ID token signed with the hospital provider's own key, for Peerway's web client."""
    base = {"aud": "peerway-web", "sub": "casey", "nonce": "this-sign-in"}
    return idp.mint("hospital", {**base, **claims}, {"typ": "JWT"})


@pytest.mark.parametrize(
    ("claims", "refusal"),
    [
        ({"nonce": "another-sign-in"}, "nonce"),  # an ID token from another browser's sign-in
        ({"nonce": None}, "nonce"),
        ({"iss": "https://evil.test/hospital"}, "not for this sign-in"),
        ({"aud": "another-client"}, "not for this sign-in"),
        ({"exp": 1_000_000_000, "iat": 999_999_000}, "expired"),
        ({"iat": 4_000_000_000, "exp": 4_000_000_600}, "future"),
        ({"sub": None}, "sub"),
    ],
)
def test_an_id_token_not_for_this_sign_in_is_refused(idp: TestIdp, claims: dict[str, object], refusal: str) -> None:
    keys = key_set(idp.jwks("hospital"))
    issuer = idp.issuer("hospital")
    assert web_signin.check_id_token(id_token(idp), keys, issuer, "peerway-web", "this-sign-in") == "casey"
    with pytest.raises(Unauthorized, match=refusal):
        web_signin.check_id_token(id_token(idp, **claims), keys, issuer, "peerway-web", "this-sign-in")


def test_the_access_token_must_name_the_id_tokens_person(idp: TestIdp) -> None:
    issuer = idp.issuer("hospital")
    casey = idp.mint("hospital", {"sub": "casey"})
    assert web_signin.same_person(casey, issuer, "casey")
    assert not web_signin.same_person(casey, issuer, "stranger")
    assert not web_signin.same_person(casey, "https://evil.test/hospital", "casey")
