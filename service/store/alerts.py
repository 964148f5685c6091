"""Tables for the safety net: alerts (items with a state), supervision check-ins, each site's thresholds; and
the one read of program history the safety net and the outcomes share (facts, see domain/safety.py)."""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from datetime import date, datetime

from sqlalchemy import (
    Boolean,
    Date,
    Index,
    Integer,
    Select,
    String,
    Text,
    UniqueConstraint,
    exists,
    false,
    func,
    or_,
    select,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, aliased, mapped_column

from service.domain.safety import EpisodeFacts, PeerFacts, Stint
from service.store.matching import Assignment, EpisodeClosure
from service.store.models import Base, Client, Contact, Episode, PeerSupporter, UTCDateTime

OPEN, ACKNOWLEDGED, RESOLVED = "open", "acknowledged", "resolved"


class Alert(Base):
    """Something a coordinator should look at. One row per (kind, subject, period): the same condition found
    again by a later run (or a second worker) is the same alert."""

    __tablename__ = "alert"
    __table_args__ = (
        UniqueConstraint("kind", "subject", "period", name="uq_alert_kind_subject_period"),
        Index("ix_alert_site_state", "site", "state"),
        Index("ix_alert_organization_state", "organization", "state"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    subject: Mapped[str] = mapped_column(String(64))  # an episode id, or a peer id (supervision)
    period: Mapped[str] = mapped_column(String(64))  # which occurrence: a date, or a peer's pause (start/peer)
    site: Mapped[str | None] = mapped_column(String(64))  # a site's coordinators see it ...
    organization: Mapped[str | None] = mapped_column(String(64))  # ... or a peer organization's
    state: Mapped[str] = mapped_column(String(16))  # open | acknowledged | resolved
    detail_json: Mapped[str] = mapped_column(Text)  # ids and numbers only: never a name or anything clinical
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime())
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    acknowledged_by: Mapped[str | None] = mapped_column(String(200))
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    resolved_by: Mapped[str | None] = mapped_column(String(200))  # a person, or "safety-net" (condition ended)
    resolution: Mapped[str | None] = mapped_column(String(32))  # condition-ended | coordinator | episode-ended
    note: Mapped[str | None] = mapped_column(Text)
    # A Flag was queued for the client's EHR when it opened: its close is written too, whatever the site's
    # setting is by then (else the EHR's Flag would stay active forever).
    ehr_flag: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class PeerPause(Base):
    """Since when the safety net has seen a peer paused (the first run that found them so). Keys each pause's
    cover-needed alerts, so a second pause is a new occurrence; the row goes when the peer comes back."""

    __tablename__ = "peer_pause"

    peer_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    since: Mapped[datetime] = mapped_column(UTCDateTime())


class SupervisionCheckIn(Base):
    """A supervision check-in with a peer: when and how it went. Deliberately no free text (no clinical notes)."""

    __tablename__ = "supervision_check_in"
    __table_args__ = (Index("ix_check_in_peer_date", "peer_id", "held_on"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    peer_id: Mapped[str] = mapped_column(String(64))
    organization: Mapped[str] = mapped_column(String(64))
    held_on: Mapped[date] = mapped_column(Date())
    outcome: Mapped[str] = mapped_column(String(32))
    recorded_by: Mapped[str] = mapped_column(String(200))
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime())


class SiteThresholds(Base):
    """A site's own safety-net thresholds (a site without a row uses the settings' defaults)."""

    __tablename__ = "site_safety_net"

    site: Mapped[str] = mapped_column(String(64), primary_key=True)
    no_contact_days: Mapped[int] = mapped_column(Integer)
    unassigned_days: Mapped[int] = mapped_column(Integer)
    weekly_minimum_minutes: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ehr_flags: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


async def weekly_minimums(session: AsyncSession) -> dict[str, int]:
    """Site -> its own weekly minimum (sites with none set are absent)."""
    rows = await session.execute(select(SiteThresholds.site, SiteThresholds.weekly_minimum_minutes))
    return {site: int(minutes) for site, minutes in rows.all()}


def detail_of(alert: Alert) -> dict[str, str | int | None]:
    detail: dict[str, str | int | None] = json.loads(alert.detail_json)
    return detail


async def alerts_of_kinds(session: AsyncSession, kinds: Collection[str]) -> Sequence[Alert]:
    """Every alert of these kinds not yet resolved (the run compares them with what is due now), locked until the
    transaction ends (FOR UPDATE on PostgreSQL; SQLite has one writer anyway): a coordinator's resolve waits, or
    the run waits for it and, reading again, no longer finds the row unresolved."""
    query = select(Alert).where(Alert.kind.in_(sorted(kinds)), Alert.state != RESOLVED).order_by(Alert.id)
    return (await session.execute(query.with_for_update())).scalars().all()


async def sync_pauses(session: AsyncSession, paused: Collection[str], now: datetime) -> dict[str, datetime]:
    """Peer id -> since when it is paused: a pause not seen before starts now; a peer back at work loses its row."""
    rows = {r.peer_id: r for r in (await session.execute(select(PeerPause).with_for_update())).scalars()}
    for peer_id, row in rows.items():
        if peer_id not in paused:
            await session.delete(row)
    for peer_id in sorted(set(paused) - set(rows)):
        rows[peer_id] = PeerPause(peer_id=peer_id, since=now)
        session.add(rows[peer_id])
    return {peer_id: rows[peer_id].since for peer_id in paused}


async def keys_present(session: AsyncSession, keys: Collection[tuple[str, str, str]]) -> set[tuple[str, str, str]]:
    """Which (kind, subject, period) already have an alert, in any state."""
    subjects = sorted({k[1] for k in keys})
    found: set[tuple[str, str, str]] = set()
    for n in range(0, len(subjects), 500):
        rows = await session.execute(
            select(Alert.kind, Alert.subject, Alert.period).where(Alert.subject.in_(subjects[n : n + 500]))
        )
        found |= {(k, s, p) for k, s, p in rows.all()}
    return found & set(keys)


async def alerts_in_scope(
    session: AsyncSession, *, site: str | None, organization: str | None, states: Collection[str], limit: int = 1000
) -> Sequence[Alert]:
    query = select(Alert).where(Alert.state.in_(sorted(states)))
    query = query.where(Alert.site == site) if site is not None else query.where(Alert.organization == organization)
    return (await session.execute(query.order_by(Alert.opened_at, Alert.id).limit(limit))).scalars().all()


async def alert_in_scope(
    session: AsyncSession, alert_id: str, *, site: str | None, organization: str | None
) -> Alert | None:
    """The alert if the caller's site (or organization) owns it: another's is not found, as a missing one."""
    alert = await session.get(Alert, alert_id, with_for_update=True)
    if alert is None:
        return None
    if (site is not None and alert.site == site) or (organization is not None and alert.organization == organization):
        return alert
    return None


# --- facts: what happened, read once for the rules and the outcomes ---------------------------------------------


def _chunks(ids: Sequence[str], size: int = 500) -> list[Sequence[str]]:
    return [ids[n : n + size] for n in range(0, len(ids), size)]


def episodes_query(
    site: str | None = None,
    *,
    open_at: datetime | None = None,
    started_before: datetime | None = None,
    peer_id: str | None = None,
) -> Select[str, str, str, datetime | None, datetime, datetime | None, str | None]:
    """episode_facts' statement: the episodes' own columns with their client's site (whether a later episode
    followed one, a readmission, is found by ix_episode_previous)."""
    query = select(
        Episode.id,
        Episode.client_id,
        Client.site,
        Episode.admitted_at,
        Episode.created_at,
        Episode.discharged_at,
        Episode.previous_episode_id,
    ).join(Client, Client.id == Episode.client_id)
    if site is not None:
        query = query.where(Client.site == site)
    if peer_id is not None:  # the peer of the open assignment (episode.peer_id is its projection)
        query = query.where(Episode.peer_id == peer_id)
    if started_before is not None:
        query = query.where(func.coalesce(Episode.admitted_at, Episode.created_at) < started_before)
    if open_at is not None:
        later = aliased(Episode, name="later")
        query = query.outerjoin(EpisodeClosure, EpisodeClosure.episode_id == Episode.id).where(
            or_(EpisodeClosure.ended_at.is_(None), EpisodeClosure.ended_at > open_at),
            ~exists().where(
                later.previous_episode_id == Episode.id,
                func.coalesce(later.admitted_at, later.created_at) <= open_at,
            ),
        )
    return query


async def episode_facts(
    session: AsyncSession,
    site: str | None = None,
    *,
    open_at: datetime | None = None,
    started_before: datetime | None = None,
    peer_id: str | None = None,
) -> list[EpisodeFacts]:
    """Episodes with their assignments, closure and the contacts not cancelled: one site's or every site's; with
    `open_at`, only those still open then (not ended, not followed by a readmission by that moment), which is all
    the safety net needs however long the program has run; with `started_before`, only those begun before it
    (a report reads the episodes open at its period's start and begun before its end + 90 days); with `peer_id`,
    only those whose open assignment is that peer's (a peer's own screens: not every open episode's facts)."""
    query = episodes_query(site, open_at=open_at, started_before=started_before, peer_id=peer_id)
    rows = (await session.execute(query)).all()
    ids = sorted(r[0] for r in rows)
    stints: dict[str, list[Stint]] = {}
    closures: dict[str, EpisodeClosure] = {}
    contacts: dict[str, list[tuple[datetime, int]]] = {}
    for chunk in _chunks(ids):
        found = await session.execute(
            select(Assignment).where(Assignment.episode_id.in_(chunk)).order_by(Assignment.started_at, Assignment.id)
        )
        for a in found.scalars():
            stints.setdefault(a.episode_id, []).append(Stint(a.peer_id, a.started_at, a.ended_at, a.end_kind))
        ended = await session.execute(select(EpisodeClosure).where(EpisodeClosure.episode_id.in_(chunk)))
        closures.update({c.episode_id: c for c in ended.scalars()})
        made = await session.execute(
            select(Contact.episode_id, Contact.started_at, Contact.minutes).where(
                Contact.episode_id.in_(chunk), Contact.status != "entered-in-error"
            )
        )
        for episode_id, started_at, minutes in made.all():
            contacts.setdefault(episode_id, []).append((started_at, int(minutes)))
    out = []
    for episode_id, client_id, client_site, admitted_at, created_at, discharged_at, previous in rows:
        closure = closures.get(episode_id)
        out.append(
            EpisodeFacts(
                id=episode_id,
                client_id=client_id,
                site=client_site,
                started_at=admitted_at or created_at,
                discharged_at=discharged_at,
                previous_episode_id=previous,
                closed_at=closure.ended_at if closure else None,
                closure_reason=closure.reason if closure else None,
                stints=tuple(stints.get(episode_id, ())),
                contacts=tuple(sorted(contacts.get(episode_id, ()))),
            )
        )
    return out


async def peer_facts(session: AsyncSession) -> list[PeerFacts]:
    check_ins: dict[str, list[date]] = {}
    for peer_id, held_on in (
        await session.execute(select(SupervisionCheckIn.peer_id, SupervisionCheckIn.held_on))
    ).all():
        check_ins.setdefault(peer_id, []).append(held_on)
    peers = (await session.execute(select(PeerSupporter))).scalars().all()
    return [
        PeerFacts(p.id, p.organization_id, p.status, p.created_at, tuple(sorted(check_ins.get(p.id, ()))))
        for p in peers
    ]
