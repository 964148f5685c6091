"""What every page shares: the session cookie, the signed-in person, CSRF, templates and the security headers.

Sessions live server-side (service/app/web_sessions.py); the cookie is an opaque id, HttpOnly, SameSite=Lax,
Secure except in development over plain http. Every POST carries the session's CSRF token in a form field,
compared in constant time. Pages answer with a strict content security policy (scripts, styles, images and
forms from this origin only; no inline script) and are never cached or framed."""

from __future__ import annotations

import hmac
import re
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates

from service.app import web_sessions
from service.app.identity import Gatekeeper
from service.app.uow import SessionFactory
from service.app.web_sessions import WebUser
from service.auth.principal import Principal, Role
from service.errors import PeerwayError
from service.settings import Settings
from service.web.strings import translator

HERE = Path(__file__).parent
TEMPLATES = Jinja2Templates(directory=str(HERE / "templates"))
TEMPLATES.env.globals["t"] = translator("en")
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_sessions(request: Request) -> SessionFactory:
    sessions: SessionFactory = request.app.state.sessions
    return sessions


def gatekeeper(request: Request) -> Gatekeeper:
    """The app's one Gatekeeper (the API's too: the same attribute, made by whichever asks first)."""
    gate: Gatekeeper | None = getattr(request.app.state, "gatekeeper", None)
    if gate is None:
        gate = Gatekeeper(request.app.state.settings, request.app.state.sessions)
        request.app.state.gatekeeper = gate
    return gate


def wake_worker(request: Request) -> None:
    """A contact just queued leaves for the EHR now, not at the worker's next poll."""
    wake = getattr(request.app.state, "worker_wake", None)
    if wake is not None:
        wake.set()


# FastAPI runs a plain `def` dependency in its thread pool (a thread hop per page for a dictionary lookup); the
# pages depend on these async twins instead.
async def _settings(request: Request) -> Settings:
    return get_settings(request)


async def _sessions(request: Request) -> SessionFactory:
    return get_sessions(request)


async def _gatekeeper(request: Request) -> Gatekeeper:
    return gatekeeper(request)


SettingsDep = Annotated[Settings, Depends(_settings)]
SessionsDep = Annotated[SessionFactory, Depends(_sessions)]
GatekeeperDep = Annotated[Gatekeeper, Depends(_gatekeeper)]


def cookie_name(settings: Settings) -> str:
    # __Host- binds the cookie to this origin (Secure, Path=/, no Domain); plain http in development cannot.
    return "__Host-peerway" if secure_cookies(settings) else "peerway"


def secure_cookies(settings: Settings) -> bool:
    return not (settings.env == "dev" and settings.base_url.startswith("http://"))


def set_session_cookie(response: Response, settings: Settings, cookie: str) -> None:
    response.set_cookie(
        cookie_name(settings),
        cookie,
        max_age=int(settings.web_session_hours * 3600),
        path="/",
        secure=secure_cookies(settings),
        httponly=True,
        samesite="lax",
    )


def clear_session_cookie(response: Response, settings: Settings) -> None:
    response.delete_cookie(cookie_name(settings), path="/", secure=secure_cookies(settings), httponly=True)


def session_cookie(request: Request) -> str | None:
    return request.cookies.get(cookie_name(get_settings(request)))


class SignInNeeded(Exception):
    """No session, or it ended: the browser goes to the sign-in page."""


class BadForm(Exception):
    """The form is stale (CSRF token) or a field is wrong: the page says which."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.message, self.status = message, status


def render(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    user: WebUser | None = getattr(request.state, "web_user", None)
    context.setdefault("user", user)
    context.setdefault("csrf", user.csrf if user else "")
    response = TEMPLATES.TemplateResponse(request, template, context, status_code=status)
    response.headers.update(SECURITY_HEADERS)
    return response


def see_other(url: str) -> RedirectResponse:
    response = RedirectResponse(url, status_code=303)
    response.headers.update(SECURITY_HEADERS)
    return response


_ID = r"[A-Za-z0-9.-]{1,64}"
PAGES = re.compile(rf"^/(desk(/(clients|deliveries|peers|episodes/{_ID}))?|peer(/clients/{_ID})?)$")  # the GET pages


def back_to(path: str) -> str:
    """The page a refused action came from, so "Go back" keeps the person where they were: the nearest page
    above the action's path (/desk/episodes/{id}/consent: the client's page), or home."""
    parts = path.rstrip("/").split("/")
    for end in range(len(parts) - 1, 1, -1):
        if PAGES.match(above := "/".join(parts[:end])):
            return above
    return "/"


def _error_page(request: Request, status: int, message: str) -> HTMLResponse:
    return render(request, "error.html", status=status, message=message, back=back_to(request.url.path))


class WebRoute(APIRoute):
    """A page's errors are pages: a refused action shows why (naming the field), a lost session goes to sign-in."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            try:
                return await handler(request)
            except SignInNeeded:
                return see_other("/signin")
            except BadForm as exc:
                return _error_page(request, exc.status, exc.message)
            except PeerwayError as exc:
                where = f" ({exc.expression})" if exc.expression else ""
                return _error_page(request, exc.status, f"{exc.diagnostics}{where}")
            except RequestValidationError as exc:
                first = exc.errors()[0]
                field = ".".join(str(p) for p in first.get("loc", ())[1:]) or "form"
                return _error_page(request, 422, f"{field}: {first.get('msg')}")

        return guarded


async def web_user(request: Request) -> WebUser | None:
    user = await web_sessions.current(get_sessions(request), get_settings(request), session_cookie(request))
    request.state.web_user = user
    return user


def signed_in(*roles: Role) -> Callable[..., Awaitable[Principal]]:
    async def check(user: Annotated[WebUser | None, Depends(web_user)]) -> Principal:
        if user is None or user.principal is None or user.principal.role not in roles:
            raise SignInNeeded
        return user.principal

    return check


async def check_csrf(request: Request) -> None:
    """Every POST: the form's csrf field must be this session's token."""
    user: WebUser | None = getattr(request.state, "web_user", None)
    if user is None:
        user = await web_user(request)
    form = await request.form()
    given = form.get("csrf")
    if user is None or not isinstance(given, str) or not hmac.compare_digest(given.encode(), user.csrf.encode()):
        raise BadForm(translator("en")("error.csrf"), status=403)


CoordinatorPage = Annotated[Principal, Depends(signed_in(Role.COORDINATOR))]
PeerPage = Annotated[Principal, Depends(signed_in(Role.PEER))]
Csrf = Depends(check_csrf)
