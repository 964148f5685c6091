"""The coordinator's desk: Today, the client lists, a client's page with consent and matching, peers."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Form, Path, Query, Request, Response

from consent.categories import DataCategory
from service.app import alerts, delivery, desk, desk_alerts, matching, page_links
from service.domain.vocabulary import END_REASONS, REMATCH_REASONS
from service.web.pages import (
    BadForm,
    CoordinatorPage,
    Csrf,
    SessionsDep,
    SettingsDep,
    WebRoute,
    render,
    see_other,
    wake_worker,
)
from service.web.strings import translator

router = APIRouter(prefix="/desk", route_class=WebRoute, include_in_schema=False)
EpisodeForm = Annotated[str, Form(pattern=r"^[A-Za-z0-9.-]{1,64}$")]
_t = translator("en")


AlertState = Literal["active", "resolved"]
TODAY_ALERTS = 5  # the oldest alerts Today lists under its tiles; the alerts page has them all


@router.get("")
async def today(request: Request, caller: CoordinatorPage, sessions: SessionsDep, settings: SettingsDep) -> Response:
    items = await desk.today(sessions, settings, caller.site)
    oldest = (await desk_alerts.alert_rows(sessions, caller.site))[:TODAY_ALERTS]
    return render(request, "desk_today.html", items=items, alerts=oldest)


@router.get("/alerts")
async def alert_list(
    request: Request, caller: CoordinatorPage, sessions: SessionsDep, show: AlertState = "active"
) -> Response:
    rows = await desk_alerts.alert_rows(sessions, caller.site, ["resolved"] if show == "resolved" else None)
    return render(request, "desk_alerts.html", rows=rows, show=show, choices=desk_alerts.RESOLVE_CHOICES)


@router.post("/alerts/{alert_id}/acknowledge", dependencies=[Csrf])
async def acknowledge_alert(alert_id: str, caller: CoordinatorPage, sessions: SessionsDep) -> Response:
    await alerts.acknowledge(sessions, alert_id, caller.subject, site=caller.site)
    return see_other("/desk/alerts")


@router.post("/alerts/{alert_id}/resolve", dependencies=[Csrf])
async def resolve_alert(
    alert_id: str,
    caller: CoordinatorPage,
    sessions: SessionsDep,
    how: Annotated[str, Form(max_length=64)] = desk_alerts.CLOSE,
    note: Annotated[str | None, Form(max_length=500)] = None,
) -> Response:
    if how not in desk_alerts.RESOLVE_CHOICES:
        raise BadForm(f"how: {_t('alerts.how_unknown')}")
    await alerts.resolve(sessions, alert_id, caller.subject, desk_alerts.resolution(how, note), site=caller.site)
    return see_other("/desk/alerts")


@router.get("/deliveries")
async def deliveries(
    request: Request, caller: CoordinatorPage, sessions: SessionsDep, settings: SettingsDep
) -> Response:
    found = await desk.deliveries(sessions, settings, caller.site)
    return render(request, "desk_deliveries.html", found=found)


@router.post("/deliveries/{item_id}/replay", dependencies=[Csrf])
async def replay(
    item_id: Annotated[int, Path(ge=1, le=2**63 - 1)], request: Request, caller: CoordinatorPage, sessions: SessionsDep
) -> Response:
    await delivery.replay_dead_letter(sessions, item_id, caller.site)
    wake_worker(request)
    return see_other("/desk/deliveries")


@router.get("/clients")
async def clients(
    request: Request,
    caller: CoordinatorPage,
    sessions: SessionsDep,
    settings: SettingsDep,
    show: Annotated[str | None, Query(max_length=32)] = None,
    before: Annotated[str | None, Query(max_length=120)] = None,
) -> Response:
    if show is not None and show not in desk.CLIENT_FILTERS:
        raise BadForm(f"show: one of {', '.join(sorted(desk.CLIENT_FILTERS))}")
    names = await desk.peer_names(sessions, caller.site)
    days = (await alerts.thresholds(sessions, settings, caller.site)).no_contact_days
    if show is not None:
        rows = await desk.episodes(sessions, caller.site, show)
        return render(request, "desk_clients.html", rows=rows, show=show, peers=names, no_contact_days=days)
    listed = await desk.client_list(sessions, caller.site, None if before is None else older_than(before))
    return render(
        request,
        "desk_clients.html",
        rows=listed.open,
        ended=listed.ended,
        older=None if listed.older is None else page_key(listed.older),
        paged=before is not None,
        show=None,
        peers=names,
        no_contact_days=days,
    )


def page_key(key: tuple[datetime, str]) -> str:
    """Where a page of ended episodes starts, as the `before` of its link."""
    return page_links.key_text(key)


def older_than(before: str) -> tuple[datetime, str]:
    """page_key's inverse; a `before` that is not one is a 422 naming it (a time out of range in UTC too)."""
    key = page_links.key_of(before)
    if key is None:
        raise BadForm("before: the link to older ended episodes is not one this page made")
    return key


def consent_default_until(today: date) -> date:
    """The consent form's proposed end: a year from today (by days: today.replace(year=...) fails on 29 February)."""
    return today + timedelta(days=365)


@router.get("/episodes/{episode_id}")
async def client_page(episode_id: str, request: Request, caller: CoordinatorPage, sessions: SessionsDep) -> Response:
    page = await desk.client_page(sessions, caller.site, episode_id)
    return render(
        request,
        "desk_client.html",
        page=page,
        categories=list(DataCategory),
        peers=page.peer_names,
        end_reasons=sorted(END_REASONS),
        rematch_reasons=sorted(REMATCH_REASONS),
        default_until=consent_default_until(date.today()).isoformat(),
    )


@router.post("/episodes/{episode_id}/consent", dependencies=[Csrf])
async def record_consent(
    episode_id: str,
    caller: CoordinatorPage,
    sessions: SessionsDep,
    until: Annotated[date, Form()],
    category: Annotated[list[DataCategory] | None, Form()] = None,
    who: Annotated[str, Form(pattern=r"^(assigned|[A-Za-z0-9.-]{1,64})$")] = "assigned",
) -> Response:
    if not category:
        raise BadForm(f"category: {_t('consent.pick_one')}")
    if until < date.today():
        raise BadForm(f"until: {_t('consent.until_past')}")
    await desk.record_consent(sessions, caller.site, episode_id, category, None if who == "assigned" else who, until)
    return see_other(f"/desk/episodes/{episode_id}")


@router.post("/consents/{consent_id}/withdraw", dependencies=[Csrf])
async def withdraw_consent(
    consent_id: str, caller: CoordinatorPage, sessions: SessionsDep, episode: EpisodeForm
) -> Response:
    await desk.withdraw_consent(sessions, caller.site, consent_id)
    return see_other(f"/desk/episodes/{episode}")


@router.post("/episodes/{episode_id}/assign", dependencies=[Csrf])
async def assign(
    episode_id: str, caller: CoordinatorPage, sessions: SessionsDep, peer: Annotated[str, Form(max_length=64)]
) -> Response:
    await matching.confirm(sessions, caller.site, episode_id, peer)
    return see_other(f"/desk/episodes/{episode_id}")


@router.post("/episodes/{episode_id}/rematch", dependencies=[Csrf])
async def rematch(
    episode_id: str, caller: CoordinatorPage, sessions: SessionsDep, reason: Annotated[str, Form(max_length=64)]
) -> Response:
    await matching.rematch(sessions, caller.site, episode_id, "coordinator", reason)
    return see_other(f"/desk/episodes/{episode_id}")


@router.post("/episodes/{episode_id}/end", dependencies=[Csrf])
async def end(
    episode_id: str, caller: CoordinatorPage, sessions: SessionsDep, reason: Annotated[str, Form(max_length=64)]
) -> Response:
    await matching.end_episode(sessions, caller.site, episode_id, reason)
    return see_other(f"/desk/episodes/{episode_id}")


@router.get("/peers")
async def peers(request: Request, caller: CoordinatorPage, sessions: SessionsDep, settings: SettingsDep) -> Response:
    loads = await matching.caseload_view(sessions, caller.site)
    # The site's own weekly minimum, as the safety net judges weeks by it (not matching's program-wide hour).
    minimum = (await alerts.thresholds(sessions, settings, caller.site)).weekly_minimum_minutes
    return render(request, "desk_peers.html", loads=loads, minimum=minimum)
