"""The peer supporter's screens (phone first): my clients, one client with the contact form, my status."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import APIRouter, Form, Request, Response

from service.app import peer_desk
from service.domain.vocabulary import ContactKind, PeerStatus
from service.web.pages import (
    BadForm,
    Csrf,
    PeerPage,
    SessionsDep,
    SettingsDep,
    WebRoute,
    render,
    see_other,
    wake_worker,
)

router = APIRouter(prefix="/peer", route_class=WebRoute, include_in_schema=False)

Kind = Annotated[ContactKind, Form()]
When = Annotated[str, Form(max_length=32)]
Minutes = Annotated[int, Form(ge=1, le=24 * 60)]
Offset = Annotated[int | None, Form(ge=-24 * 60, le=24 * 60)]  # getTimezoneOffset() (pages from before `tz`)
Zone = Annotated[str, Form(max_length=64, pattern=r"^[A-Za-z0-9_+/-]*$")]  # the browser's IANA zone ("": none)


EARLIEST = timedelta(days=366)  # a contact is logged at most about a year late...
LATEST = timedelta(days=1)  # ...and not more than a day ahead (time zones, a phone's clock)


def zone_of(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise BadForm(f"tz: {name!r} is not a time zone") from None


def started_at(when: str, zone: ZoneInfo, offset_minutes: int | None = None, now: datetime | None = None) -> datetime:
    """The form's local date and time (datetime-local) read in the peer's time zone (the browser's IANA zone,
    else the program's; a page from before zones sent a UTC offset), as an aware time, within a year back and a
    day ahead of now (outside that window it is a typo, and far dates overflow)."""
    try:
        local = datetime.fromisoformat(when)
    except ValueError:
        raise BadForm("when: a date and time is needed (YYYY-MM-DDTHH:MM)") from None
    if local.tzinfo is not None:
        raise BadForm("when: a local date and time, without a zone")
    now = now or datetime.now(UTC)
    try:
        if offset_minutes is not None:
            start: datetime | None = local.replace(tzinfo=UTC) + timedelta(minutes=offset_minutes)
        else:
            start = local.replace(tzinfo=zone).astimezone(UTC)
    except OverflowError:
        start = None
    if start is None or not now - EARLIEST <= start <= now + LATEST:
        raise BadForm("when: a time within the last year, and not more than a day ahead")
    return start


@router.get("")
async def my_clients(request: Request, caller: PeerPage, sessions: SessionsDep, settings: SettingsDep) -> Response:
    clients = await peer_desk.my_clients(sessions, settings.base_url, caller.subject)
    status = await peer_desk.my_status(sessions, caller.subject)
    weeks = await peer_desk.my_weeks(sessions, settings, caller.subject)
    return render(request, "peer_clients.html", clients=clients, paused=status is PeerStatus.PAUSED, weeks=weeks)


@router.get("/clients/{client_id}")
async def my_client(
    client_id: str, request: Request, caller: PeerPage, sessions: SessionsDep, settings: SettingsDep
) -> Response:
    client = await peer_desk.my_client(sessions, settings.base_url, caller.subject, client_id)
    return render(
        request,
        "peer_client.html",
        client=client,
        kinds=list(ContactKind),
        form_id=peer_desk.new_form_id(),
        zone=settings.web_time_zone,
        logged=request.query_params.get("logged") == "1",
    )


@router.post("/clients/{client_id}/contacts", dependencies=[Csrf])
async def log_contact(
    client_id: str,
    request: Request,
    caller: PeerPage,
    sessions: SessionsDep,
    kind: Kind,
    when: When,
    minutes: Minutes,
    form_id: Annotated[str, Form(min_length=8, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")],
    settings: SettingsDep,
    tz: Zone = "",
    tz_offset: Offset = None,
) -> Response:
    start = started_at(when, zone_of(tz or settings.web_time_zone), None if tz else tz_offset)
    await peer_desk.log_contact(sessions, caller.subject, client_id, kind, start, minutes, form_id)
    wake_worker(request)  # the Encounter leaves for the EHR now
    return see_other(f"/peer/clients/{client_id}?logged=1")


@router.post("/contacts/{contact_id}/correct", dependencies=[Csrf])
async def correct_contact(
    contact_id: str,
    request: Request,
    caller: PeerPage,
    sessions: SessionsDep,
    kind: Kind,
    when: When,
    minutes: Minutes,
    version: Annotated[int, Form(ge=1)],
    client_id: Annotated[str, Form(pattern=r"^[A-Za-z0-9.-]{1,64}$")],
    tz: Zone = "UTC",  # the correction form shows the contact's time in UTC
    tz_offset: Offset = None,
) -> Response:
    start = started_at(when, zone_of(tz or "UTC"), None if tz else tz_offset)
    await peer_desk.correct_contact(sessions, caller.subject, contact_id, kind, start, minutes, version)
    wake_worker(request)
    return see_other(f"/peer/clients/{client_id}")


@router.post("/contacts/{contact_id}/cancel", dependencies=[Csrf])
async def cancel_contact(
    contact_id: str,
    request: Request,
    caller: PeerPage,
    sessions: SessionsDep,
    version: Annotated[int, Form(ge=1)],
    client_id: Annotated[str, Form(pattern=r"^[A-Za-z0-9.-]{1,64}$")],
) -> Response:
    await peer_desk.cancel_contact(sessions, caller.subject, contact_id, version)
    wake_worker(request)
    return see_other(f"/peer/clients/{client_id}")


@router.post("/status", dependencies=[Csrf])
async def set_status(caller: PeerPage, sessions: SessionsDep, paused: Annotated[bool, Form()]) -> Response:
    await peer_desk.set_my_status(sessions, caller.subject, paused)
    return see_other("/peer")
