"""The safety net: a periodic run opens the alerts the program's history calls for and closes those whose
condition ended; coordinators list, acknowledge and resolve them (a drop-out confirmed ends the episode or asks
for a new peer through the matching use cases).

Scope: a site's coordinator sees the alerts about the site's clients; a peer organization's coordinator sees the
supervision alerts about its own peers. Anyone else's alert is not found, exactly like a missing one.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from consent import DataCategory
from service.app import matching, notifications
from service.app.clock import new_id, utcnow
from service.app.disclosures import record_disclosure
from service.domain import safety
from service.domain.safety import EHR_FLAG_KINDS, Thresholds
from service.domain.vocabulary import END_REASONS, REMATCH_REASONS
from service.errors import Conflict, InvalidResource, NotFound
from service.settings import Settings
from service.store import alerts as store
from service.store.alerts import ACKNOWLEDGED, OPEN, RESOLVED, Alert, SiteThresholds
from service.store.db import SessionFactory, transaction
from service.store.jobs import new_job
from service.store.models import Client, Episode, PeerSupporter

log = logging.getLogger(__name__)
SAFETY_NET = "safety-net"  # who resolved an alert whose condition ended
ACTIVE_STATES = frozenset({OPEN, ACKNOWLEDGED})
STATES = frozenset({OPEN, ACKNOWLEDGED, RESOLVED})
OUTBOX_FLAG = "flag"  # an alert's Flag at its client's EHR (a site setting), queued when it opens and closes


@dataclass(frozen=True)
class Run:
    opened: int
    closed: int


def defaults(settings: Settings) -> Thresholds:
    return Thresholds(settings.no_contact_days, settings.unassigned_days, settings.weekly_minimum_minutes)


def _thresholds(r: SiteThresholds) -> Thresholds:
    return Thresholds(r.no_contact_days, r.unassigned_days, r.weekly_minimum_minutes, r.ehr_flags)


async def _site_thresholds(session: AsyncSession) -> dict[str, Thresholds]:
    return {r.site: _thresholds(r) for r in (await session.execute(select(SiteThresholds))).scalars()}


def _flag_job(session: AsyncSession, alert: Alert, by_site: dict[str, Thresholds], now: datetime) -> None:
    """Queue the alert's Flag for its client's EHR, in the transaction that opened or closed it (the worker writes
    it; jobs of one alert are done in order). An opening is flagged if the site asks for Flags then; a closing if
    a Flag was written at the opening, whatever the site asks by now, so no Flag stays active for ever."""
    if alert.kind not in EHR_FLAG_KINDS or alert.site is None:
        return
    if alert.state == RESOLVED:
        if alert.ehr_flag:
            session.add(new_job(OUTBOX_FLAG, alert.id, alert.site, now))
        return
    wanted = by_site.get(alert.site)
    if wanted is not None and wanted.ehr_flags:
        alert.ehr_flag = True
        session.add(new_job(OUTBOX_FLAG, alert.id, alert.site, now))


async def _reconcile(session: AsyncSession, settings: Settings, now: datetime) -> Run:
    # Locked first (PostgreSQL), so a coordinator resolving one meanwhile is not overwritten by this run.
    active = await store.alerts_of_kinds(session, safety.KINDS)
    episodes = await store.episode_facts(session, open_at=now)
    peers = await store.peer_facts(session)
    pauses = await store.sync_pauses(session, [p.id for p in peers if p.status == "paused"], now)
    peers = [replace(p, paused_since=pauses.get(p.id)) for p in peers]
    by_site = await _site_thresholds(session)
    due = safety.due_alerts(episodes, peers, by_site, settings.supervision_every_days, now, defaults(settings))
    wanted = {(d.kind, d.subject, d.period): d for d in due}
    closed = 0
    for alert in active:
        if alert.state != RESOLVED and (alert.kind, alert.subject, alert.period) not in wanted:
            alert.state, alert.resolved_at, alert.resolved_by = RESOLVED, now, SAFETY_NET
            alert.resolution = "condition-ended"
            _flag_job(session, alert, by_site, now)
            closed += 1
    present = await store.keys_present(session, wanted.keys())
    opened = 0
    for key, d in wanted.items():
        if key in present:
            continue  # open, acknowledged, or resolved by a coordinator while the condition lasts: never again
        alert = Alert(
            id=new_id(),
            kind=d.kind,
            subject=d.subject,
            period=d.period,
            site=d.site,
            organization=d.organization,
            state=OPEN,
            detail_json=json.dumps(dict(d.detail), sort_keys=True),
            opened_at=now,
        )
        session.add(alert)
        _flag_job(session, alert, by_site, now)
        opened += 1
    return Run(opened, closed)


async def run_safety_net(sessions: SessionFactory, settings: Settings, now: datetime | None = None) -> Run:
    """Open the alerts due at `now` and close those whose condition ended, in one transaction. Run twice, or by
    two workers at once, it opens nothing twice: the second writer's duplicate is refused by the unique key and
    it runs again over what the first one wrote."""
    now = now or utcnow()
    for attempt in range(3):
        try:
            async with transaction(sessions) as session:
                run = await _reconcile(session, settings, now)
        except IntegrityError:
            if attempt == 2:
                raise
            continue
        if run.opened or run.closed:
            log.info("safety net: %d alerts opened, %d closed", run.opened, run.closed)
        return run
    raise AssertionError("unreachable")


# --- the coordinator's feed ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class AlertView:
    id: str
    kind: str
    state: str
    site: str | None
    organization: str | None
    client_id: str | None
    episode_id: str | None
    peer_id: str | None
    days: int | None  # since discharge, as of now (no-contact, unassigned)
    detail: dict[str, str | int | None]
    opened_at: datetime
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    resolved_at: datetime | None
    resolved_by: str | None
    resolution: str | None
    note: str | None


def _text(value: str | int | None) -> str | None:
    return None if value is None else str(value)


def alert_view(a: Alert, now: datetime) -> AlertView:
    detail = store.detail_of(a)
    days = None
    discharged = detail.get("discharged_at")
    if a.kind in (safety.NO_CONTACT, safety.UNASSIGNED) and isinstance(discharged, str):
        until = a.resolved_at if a.resolved_at is not None else now
        days = (until - datetime.fromisoformat(discharged)).days
    return AlertView(
        id=a.id,
        kind=a.kind,
        state=a.state,
        site=a.site,
        organization=a.organization,
        client_id=_text(detail.get("client_id")),
        episode_id=_text(detail.get("episode_id")),
        peer_id=_text(detail.get("peer_id")),
        days=days,
        detail=detail,
        opened_at=a.opened_at,
        acknowledged_at=a.acknowledged_at,
        acknowledged_by=a.acknowledged_by,
        resolved_at=a.resolved_at,
        resolved_by=a.resolved_by,
        resolution=a.resolution,
        note=a.note,
    )


def _states(states: Collection[str] | None) -> Collection[str]:
    if states is None:
        return ACTIVE_STATES
    unknown = set(states) - STATES
    if unknown:
        raise InvalidResource(f"state must be one of {sorted(STATES)}", "state")
    return states


async def list_alerts(
    sessions: SessionFactory,
    *,
    site: str | None = None,
    organization: str | None = None,
    states: Collection[str] | None = None,
    now: datetime | None = None,
) -> Sequence[AlertView]:
    """The alerts of a site (its coordinator) or of a peer organization (its coordinator), oldest first;
    open and acknowledged ones unless `states` says otherwise."""
    _scope(site, organization)
    wanted = _states(states)
    async with sessions() as session:
        rows = await store.alerts_in_scope(session, site=site, organization=organization, states=wanted)
    now = now or utcnow()
    return [alert_view(a, now) for a in rows]


def _scope(site: str | None, organization: str | None) -> None:
    if (site is None) == (organization is None):
        raise ValueError("an alert is reached through exactly one of a site or an organization")


async def acknowledge(
    sessions: SessionFactory, alert_id: str, who: str, *, site: str | None = None, organization: str | None = None
) -> AlertView:
    """Someone is on it: open -> acknowledged (again: unchanged). A resolved alert cannot be acknowledged."""
    _scope(site, organization)
    now = utcnow()
    async with transaction(sessions) as session:
        alert = await store.alert_in_scope(session, alert_id, site=site, organization=organization)
        if alert is None:
            raise NotFound(f"no alert {alert_id}")
        if alert.state == RESOLVED:
            raise Conflict(f"alert {alert_id} is resolved")
        if alert.state == OPEN:
            alert.state, alert.acknowledged_at, alert.acknowledged_by = ACKNOWLEDGED, now, who
        return alert_view(alert, now)


@dataclass(frozen=True)
class Resolution:
    """How a coordinator closes an alert: just closed, or (a drop-out confirmed) the episode ended with one of
    the episode-end reasons, or a new peer asked for with one of the re-match reasons."""

    note: str | None = None
    end_reason: str | None = None
    rematch_reason: str | None = None


async def resolve(
    sessions: SessionFactory,
    alert_id: str,
    who: str,
    resolution: Resolution,
    *,
    site: str | None = None,
    organization: str | None = None,
) -> AlertView:
    """The coordinator closes the alert (resolved again: unchanged). Ending the episode or re-matching goes
    through the matching use cases, so the EHR's CareTeam follows as for any other ending."""
    _scope(site, organization)
    if resolution.end_reason is not None and resolution.rematch_reason is not None:
        raise InvalidResource("either end the episode or ask for a new peer, not both", "rematch_reason")
    if resolution.end_reason is not None and resolution.end_reason not in END_REASONS:
        raise InvalidResource(f"end_reason must be one of {sorted(END_REASONS)}", "end_reason")
    if resolution.rematch_reason is not None and resolution.rematch_reason not in REMATCH_REASONS:
        raise InvalidResource(f"rematch_reason must be one of {sorted(REMATCH_REASONS)}", "rematch_reason")
    async with sessions() as session:
        found = await store.alert_in_scope(session, alert_id, site=site, organization=organization)
        if found is None:
            raise NotFound(f"no alert {alert_id}")
        episode_id = store.detail_of(found).get("episode_id")
        already = found.state == RESOLVED
    acting = resolution.end_reason is not None or resolution.rematch_reason is not None
    if acting and not already:
        if site is None or not isinstance(episode_id, str):
            raise InvalidResource("this alert is not about a client's episode", "end_reason")
        if resolution.end_reason is not None:
            await matching.end_episode(sessions, site, episode_id, resolution.end_reason, resolution.note)
        elif resolution.rematch_reason is not None:
            await matching.rematch(
                sessions, site, episode_id, "coordinator", resolution.rematch_reason, resolution.note
            )
    now = utcnow()
    async with transaction(sessions) as session:
        alert = await store.alert_in_scope(session, alert_id, site=site, organization=organization)
        if alert is None:
            raise NotFound(f"no alert {alert_id}")
        if alert.state != RESOLVED:
            alert.state, alert.resolved_at, alert.resolved_by = RESOLVED, now, who
            alert.resolution = (
                "episode-ended"
                if resolution.end_reason
                else "rematched"
                if resolution.rematch_reason
                else "coordinator"
            )
            alert.note = resolution.note
            _flag_job(session, alert, await _site_thresholds(session), now)
        return alert_view(alert, now)


# --- thresholds ---------------------------------------------------------------------------------------------


async def thresholds(sessions: SessionFactory, settings: Settings, site: str) -> Thresholds:
    async with sessions() as session:
        row = await session.get(SiteThresholds, site)
    return defaults(settings) if row is None else _thresholds(row)


async def set_thresholds(sessions: SessionFactory, site: str, wanted: Thresholds) -> Thresholds:
    """A site's own thresholds; the next run judges its clients by them."""
    async with transaction(sessions) as session:
        row = await session.get(SiteThresholds, site, with_for_update=True)
        if row is None:
            row = SiteThresholds(site=site)
            session.add(row)
        row.no_contact_days = wanted.no_contact_days
        row.unassigned_days = wanted.unassigned_days
        row.weekly_minimum_minutes = wanted.weekly_minimum_minutes
        row.ehr_flags = wanted.ehr_flags
        row.updated_at = utcnow()
    return wanted


# --- the peer's own list: their clients' recent weeks ---------------------------------------------------------


@dataclass(frozen=True)
class ClientWeek:
    client_id: str
    week_start: datetime
    contacts: int
    minutes: int
    below_minimum: bool


async def peer_weeks(
    sessions: SessionFactory, settings: Settings, peer_id: str, now: datetime | None = None, last: int = 4
) -> list[ClientWeek]:
    """A peer's current clients, each with their last `last` complete client-weeks against the site's minimum
    (a week under it is flagged here; two running raise a coordinator alert).

    A client's weeks start at their discharge and stop at a readmission, so they tell the peer of the client's
    stay: only the clients whose consent shares admission-discharge with this peer now are listed, each an
    audited disclosure in this read's transaction (as the peer's web page shows weeks only beside a summary
    that shares the stay). A client who shares nothing is not listed at all, before a readmission or after."""
    now = now or utcnow()
    actor = f"Practitioner/{peer_id}"
    async with transaction(sessions) as session:
        episodes = await store.episode_facts(session, open_at=now, peer_id=peer_id)
        by_site = await _site_thresholds(session)
        readmitted = safety.successors(e for e in episodes if e.started_at <= now)
        peer = await session.get(PeerSupporter, peer_id)
        out: list[ClientWeek] = []
        for e in episodes:
            later = readmitted.get(e.id)
            if peer is None or safety.peer_at(e, now) != peer_id or not safety.in_community(e, later, now):
                continue
            client = await session.get(Client, e.client_id)
            episode = await session.get(Episode, e.id)
            if client is None or episode is None:
                continue
            decision = await notifications.stay_permitted(session, client, episode, peer_id, now)
            if decision is None:
                continue
            record_disclosure(session, client.id, actor, peer.name, decision, (DataCategory.ADMISSION_DISCHARGE,), now)
            minimum = by_site.get(e.site, defaults(settings)).weekly_minimum_minutes
            for w in safety.weeks(e, later, now)[-last:]:
                out.append(ClientWeek(e.client_id, w.start, w.contacts, w.minutes, w.minutes < minimum))
    return sorted(out, key=lambda w: (w.client_id, w.week_start))
