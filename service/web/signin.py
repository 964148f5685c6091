"""Sign-in (the organization's OpenID Connect provider; in development a chooser), sign-out, and `/`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Path, Request, Response

from service.app import web_sessions
from service.app.web_sessions import WebUser
from service.auth.principal import Role
from service.errors import PeerwayError
from service.web.pages import (
    Csrf,
    GatekeeperDep,
    SessionsDep,
    SettingsDep,
    WebRoute,
    check_csrf,
    clear_session_cookie,
    render,
    see_other,
    session_cookie,
    set_session_cookie,
    web_user,
)

router = APIRouter(route_class=WebRoute, include_in_schema=False)
User = Annotated[WebUser | None, Depends(web_user)]


@router.get("/")
async def home(user: User) -> Response:
    if user is None or user.principal is None:
        return see_other("/signin")
    return see_other("/peer" if user.principal.role is Role.PEER else "/desk")


@router.get("/signin")
async def sign_in_page(request: Request, user: User, sessions: SessionsDep, settings: SettingsDep) -> Response:
    if user is not None and user.principal is not None:
        return see_other("/")
    cookie = None
    # Only the development form needs a CSRF token before sign-in (a provider's sign-in is a link), so only
    # there does an anonymous visit get a (short) session row: elsewhere, visits to this page store nothing.
    if user is None and settings.dev_sign_in:
        cookie = await web_sessions.anonymous(sessions)
        user = await web_sessions.current(sessions, settings, cookie)
        request.state.web_user = user
    response = render(
        request,
        "signin.html",
        issuers=await web_sessions.issuer_choices(sessions),
        dev_choices=await web_sessions.dev_choices(sessions, settings),
        dev=settings.dev_sign_in,
        ended=request.query_params.get("ended") == "1",
    )
    if cookie is not None:
        set_session_cookie(response, settings, cookie)
    return response


@router.post("/signin/dev", dependencies=[Csrf])
async def dev_sign_in(
    request: Request, who: Annotated[str, Form(max_length=200)], sessions: SessionsDep, settings: SettingsDep
) -> Response:
    cookie = await web_sessions.dev_sign_in(sessions, settings, session_cookie(request), who)
    response = see_other("/")
    set_session_cookie(response, settings, cookie)
    return response


@router.get("/signin/oidc/{issuer}")
async def oidc_sign_in(
    request: Request,
    issuer: Annotated[str, Path(max_length=64)],
    user: User,
    gate: GatekeeperDep,
    settings: SettingsDep,
) -> Response:
    """A GET, not a form post: the CSP's form-action 'self' would stop the redirect to the provider (Chromium
    applies it to a form's redirects). A link here cannot sign a person out (a signed-in browser just goes home),
    nor sign them in as someone else: the answer is bound to this browser's cookie by the state."""
    if user is not None and user.principal is not None:
        return see_other("/")
    cookie, url = await web_sessions.begin_sign_in(gate, session_cookie(request), issuer)
    response = see_other(url)
    set_session_cookie(response, settings, cookie)
    return response


@router.get("/signin/callback")
async def oidc_callback(request: Request, gate: GatekeeperDep, settings: SettingsDep) -> Response:
    params = request.query_params
    state, code = params.get("state", ""), params.get("code", "")
    if params.get("error") or not state or not code:
        await web_sessions.abandon_sign_in(gate.sessions, session_cookie(request))
        return render(request, "error.html", status=401, message=f"sign-in: {params.get('error') or 'no code'}")
    try:
        cookie, _ = await web_sessions.finish_sign_in(gate, session_cookie(request), state, code, params.get("iss"))
    except PeerwayError as exc:
        refused = render(request, "error.html", status=exc.status, message=exc.diagnostics)
        clear_session_cookie(refused, settings)
        return refused
    response = see_other("/")
    set_session_cookie(response, settings, cookie)
    return response


@router.post("/signout")
async def sign_out(request: Request, user: User, sessions: SessionsDep, settings: SettingsDep) -> Response:
    """Sign out. A session that already ended just goes (no "form out of date" for someone who walked away);
    a live one needs its CSRF token, so another site cannot sign a person out."""
    if user is not None:
        await check_csrf(request)
    await web_sessions.end(sessions, session_cookie(request))
    response = see_other("/signin?ended=1")
    clear_session_cookie(response, settings)
    return response
