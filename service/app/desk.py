"""The coordinator's desk: Today's counts, the site's clients by what needs doing, one client's page (details,
timeline, consents in words, matching), and the consent form, all through the use cases the API uses.

`today` is the one place the Today page asks what needs attention. Its "no contact" count is the safety net's own
open no-contact alerts (service/app/alerts.py), so the tile and the alerts page never disagree; the alerts page
itself is service/app/desk_alerts.py."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from consent.categories import DataCategory
from service.app import alerts, consents, delivery, matching, notifications, peers
from service.app.clock import utcnow
from service.app.explain import Explanation, explain_sharing
from service.domain.matching import Ranking
from service.domain.safety import NO_CONTACT
from service.fhir.web_view import ConsentWords, consent_words, display_name, form_consent, withdrawn
from service.settings import Settings
from service.store import repository
from service.store import web as store
from service.store.db import SessionFactory
from service.store.models import Client, Episode

NEW_DISCHARGE_HOURS = 72  # a discharge is "new" for three days
UPCOMING_DISCHARGE_DAYS = 7
NEAR_CAP_PLACES = 1  # a peer with at most this many free places is "near their cap"

# The Today items, in the order shown; each names a filter of the client list (or the peers page).
TODAY_KEYS = (
    "alerts",
    "new-discharge",
    "upcoming-discharge",
    "waiting",
    "readmission",
    "no-contact",
    "peers-attention",
    "failed-writes",
    "silent-channels",
)
CLIENT_FILTERS = frozenset(TODAY_KEYS[1:6])


@dataclass(frozen=True)
class TodayItem:
    key: str
    count: int
    days: int | None = None  # the site's threshold the item names (no-contact)


@dataclass(frozen=True)
class EpisodeRow:
    episode_id: str
    client_id: str
    name: str | None
    state: str
    admitted_at: datetime | None
    discharged_at: datetime | None
    expected_discharge_at: datetime | None
    peer_id: str | None
    readmission: bool
    closed: bool
    last_contact: datetime | None
    flags: frozenset[str]


@dataclass(frozen=True)
class TimelineEvent:
    at: datetime
    what: str  # admitted | discharged | readmitted | assigned | assignment-ended | contact | contact-cancelled | ended
    detail: str = ""


@dataclass(frozen=True)
class ClientPage:
    row: EpisodeRow
    timeline: tuple[TimelineEvent, ...]
    consents: tuple[ConsentWords, ...]
    explanation: Explanation | None  # for the assigned peer
    ranking: Ranking | None  # open episodes only
    peer_names: dict[str, str]


def today_flags(
    e: Episode, closed: bool, last: datetime | None, now: datetime, no_contact_alert: bool = False
) -> frozenset[str]:
    """The Today lists an episode belongs to, given whether it ended, its latest contact and whether the safety
    net holds an open (or acknowledged) no-contact alert about it."""
    flags: set[str] = set()
    if closed:
        return frozenset()
    # New: discharged in the last days, or a discharge just reported (its message may come late) and not yet
    # handled (no peer assigned since).
    recent = timedelta(hours=NEW_DISCHARGE_HOURS)
    discharged = e.discharged_at if e.state == "in-community" else None
    if discharged and (now - discharged <= recent or (e.peer_id is None and now - e.updated_at <= recent)):
        flags.add("new-discharge")
    # A date that has passed stays "upcoming" until the discharge arrives: it may be a discharge not yet sent
    # (as notifications.upcoming_discharges lists them).
    expected = e.expected_discharge_at
    if e.state == "on-ward" and expected and expected <= now + timedelta(days=UPCOMING_DISCHARGE_DAYS):
        flags.add("upcoming-discharge")
    if e.peer_id is None:
        flags.add("waiting")
    if e.readmission:
        flags.add("readmission")
    # "No contact" is the safety net's judgement (the site's threshold, counted from discharge), not a second rule
    # here that could disagree with the alerts page.
    if no_contact_alert:
        flags.add("no-contact")
    return frozenset(flags)


def _row(
    e: Episode, c: Client, closed: bool, last: datetime | None, now: datetime, silent: frozenset[str] = frozenset()
) -> EpisodeRow:
    return EpisodeRow(
        episode_id=e.id,
        client_id=c.id,
        name=display_name(json.loads(c.patient_json)),
        state=e.state,
        admitted_at=e.admitted_at,
        discharged_at=e.discharged_at,
        expected_discharge_at=e.expected_discharge_at,
        peer_id=e.peer_id,
        readmission=e.readmission,
        closed=closed,
        last_contact=last,
        flags=today_flags(e, closed, last, now, e.id in silent),
    )


ENDED_PAGE = 50  # ended episodes listed a page at a time (the open ones are listed whole)


@dataclass(frozen=True)
class ClientList:
    """The site's clients: every open episode, and a page of the ended ones (the most recently ended first)."""

    open: list[EpisodeRow]
    ended: list[EpisodeRow]
    older: store.EpisodeKey | None  # where the next page of ended episodes starts (None: no more)


async def episodes(sessions: SessionFactory, site: str, show: str | None = None) -> list[EpisodeRow]:
    """The site's open episodes, newest first; with `show`, those carrying that Today flag only (an ended episode
    carries none). Ended ones: client_list."""
    now = utcnow()
    silent = await silent_episodes(sessions, site)
    async with sessions() as session:
        found = await store.site_episodes(session, site, ended=False)
        rows = [_row(e, c, closed, last, now, silent) for e, c, closed, last in found]
    return [r for r in rows if show is None or show in r.flags]


async def client_list(sessions: SessionFactory, site: str, before: store.EpisodeKey | None = None) -> ClientList:
    """The open episodes and the first page of ended ones; with `before`, a later page of ended ones only.

    Listing every episode the site ever had took 3.8 s with 20,000 of them (each client's name read from their
    stored Patient), and Today's counts, which read them all too, 2.7 s."""
    now = utcnow()
    open_rows = [] if before is not None else await episodes(sessions, site)
    async with sessions() as session:
        found, older = await store.ended_site_episodes(session, site, ENDED_PAGE, before)
        ended = [_row(e, c, closed, last, now) for e, c, closed, last in found]
    return ClientList(open_rows, ended, older)


async def episode_rows(sessions: SessionFactory, site: str, ids: set[str]) -> dict[str, EpisodeRow]:
    """The named episodes of the site's clients (others are left out), by id."""
    now = utcnow()
    silent = await silent_episodes(sessions, site)
    async with sessions() as session:
        found = await store.site_episodes(session, site, ids=ids)
        return {e.id: _row(e, c, closed, last, now, silent) for e, c, closed, last in found}


async def silent_episodes(sessions: SessionFactory, site: str) -> frozenset[str]:
    """The site's episodes the safety net holds an open or acknowledged no-contact alert about."""
    active = await alerts.list_alerts(sessions, site=site)
    return frozenset(a.episode_id for a in active if a.kind == NO_CONTACT and a.episode_id is not None)


async def peer_names(sessions: SessionFactory, site: str) -> dict[str, str]:
    """The names of the peer supporters enabled at the site (how the desk names an assigned peer)."""
    async with sessions() as session:
        return {p.id: p.name for p in await repository.peers(session, site=site)}


async def today(sessions: SessionFactory, settings: Settings, site: str) -> list[TodayItem]:
    """What needs the coordinator today, each with a count (the page links each to its list). Only open episodes
    carry a flag: the ended ones are not read, nor any name."""
    now = utcnow()
    silent = await silent_episodes(sessions, site)
    async with sessions() as session:
        found = await store.site_episodes(session, site, ended=False)
        flags = [today_flags(e, closed, last, now, e.id in silent) for e, _, closed, last in found]
    counts = {key: sum(1 for f in flags if key in f) for key in CLIENT_FILTERS}
    counts["alerts"] = len(await alerts.list_alerts(sessions, site=site))
    loads = await matching.caseload_view(sessions, site)
    counts["peers-attention"] = sum(1 for p in loads if p.status != "active" or p.free_places <= NEAR_CAP_PLACES)
    counts["failed-writes"] = len(await delivery.list_dead_letters(sessions, site))
    channels = await notifications.channel_health(sessions, settings, site)
    counts["silent-channels"] = sum(1 for c in channels if c.health == "silent")
    threshold = (await alerts.thresholds(sessions, settings, site)).no_contact_days
    return [TodayItem(key, counts[key], threshold if key == "no-contact" else None) for key in TODAY_KEYS]


async def client_page(sessions: SessionFactory, site: str, episode_id: str) -> ClientPage:
    """One episode of one of the site's clients (another site's is the same 404 as a missing one)."""
    now = utcnow()
    silent = await silent_episodes(sessions, site)
    async with sessions() as session:
        episode = await peers.episode_in_scope(session, site, episode_id)
        client = await session.get(Client, episode.client_id)
        assert client is not None  # a foreign key
        (found,) = await store.site_episodes(session, site, episode_id)  # in scope: checked just above
        row = _row(*found, now, silent)
        contact_rows = await store.contacts_of_episode(session, episode_id)
        recorded = [
            consent_words(json.loads(d.resource_json)) for d in await repository.consents_of(session, client.id)
        ]
        names = {p.id: p.name for p in await repository.peers(session)}
    history, closure = await matching.history(sessions, site, episode_id)
    timeline: list[TimelineEvent] = []
    if episode.admitted_at:
        timeline.append(TimelineEvent(episode.admitted_at, "readmitted" if episode.readmission else "admitted"))
    if episode.discharged_at:
        timeline.append(TimelineEvent(episode.discharged_at, "discharged"))
    for a in history:
        timeline.append(TimelineEvent(a.started_at, "assigned", names.get(a.peer_id, a.peer_id)))
        if a.ended_at:
            timeline.append(TimelineEvent(a.ended_at, "assignment-ended", a.end_reason or a.end_kind or ""))
    for c in contact_rows:
        kind = "contact-cancelled" if c.status == "entered-in-error" else "contact"
        timeline.append(TimelineEvent(c.started_at, kind, f"{c.kind}|{c.minutes}"))
    if closure is not None:
        timeline.append(TimelineEvent(closure.ended_at, "ended", closure.reason))
    explanation = (
        await explain_sharing(sessions, site, client.id, None)
        if episode.peer_id is not None and not row.closed
        else None
    )
    ranking = await matching.suggest(sessions, site, episode_id) if not row.closed else None
    return ClientPage(
        row=row,
        timeline=tuple(sorted(timeline, key=lambda t: t.at)),
        consents=tuple(recorded),
        explanation=explanation,
        ranking=ranking,
        peer_names=names,
    )


async def record_consent(
    sessions: SessionFactory,
    site: str,
    episode_id: str,
    categories: list[DataCategory],
    named_peer: str | None,
    until: date,
) -> str:
    """The consent form, recorded through the consent use case (checked exactly as a posted Consent)."""
    async with sessions() as session:
        episode = await peers.episode_in_scope(session, site, episode_id)
    peer_reference = f"Practitioner/{named_peer}" if named_peer else None
    document = form_consent(episode.client_id, categories, peer_reference, until, utcnow())
    stored, _ = await consents.create_consent(sessions, site, document, None)
    return str(stored["id"])


async def withdraw_consent(sessions: SessionFactory, site: str, consent_id: str) -> None:
    """Withdraw a Consent in one action: it stays on record, no longer in force."""
    current = await consents.read_consent(sessions, site, consent_id)
    await consents.replace_consent(sessions, site, consent_id, withdrawn(current), None)


@dataclass(frozen=True)
class Deliveries:
    dead_letters: tuple[delivery.DeadLetter, ...]
    channels: tuple[notifications.ChannelHealth, ...]


async def deliveries(sessions: SessionFactory, settings: Settings, site: str) -> Deliveries:
    """The site's write-backs the EHR refused for good, and the health of its EHR's notification channels."""
    dead = await delivery.list_dead_letters(sessions, site)
    channels = await notifications.channel_health(sessions, settings, site)
    return Deliveries(tuple(dead), tuple(channels))
