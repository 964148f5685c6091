"""What peers, coordinators and operators are told: readmissions at once, the discharges coming up, and the
health of the channels hospital events arrive on.

Privacy: a notification carries ids, the event and the time Peerway recorded it: "your client <id> was
readmitted". Nothing from the EHR's Encounter (dates of the stay, unit, reasons, diagnoses) is in it; those
stay behind the client's consent in the $peer-summary. Peers see notifications only about clients who are theirs
when they read the feed. A readmission and an expected discharge date are admission/discharge data: a peer is
told them only when the client's consent permits the admission-discharge category to them, and each such
disclosure is audited. A readmission is decided twice: when it is recorded (a peer the consent withholds it from
gets no notification at all; the coordinators are told alone) and again when the peer reads the feed (a consent
withdrawn in between hides it); each notification delivered is audited in the read's own transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from consent import DataCategory, Decision
from service.app.clock import utcnow
from service.app.disclosures import record_disclosure
from service.app.sharing import Holdings, decide
from service.settings import Settings
from service.store import channel as store
from service.store import jobs, repository
from service.store.db import SessionFactory, transaction
from service.store.models import Client, Episode, PeerSupporter

PEER = "peer"
COORDINATOR = "coordinator"
READMITTED = "readmitted"
FEED_PAGE = 500


@dataclass(frozen=True)
class NotificationView:
    id: int
    event: str
    client_id: str
    episode_id: str
    created_at: datetime


@dataclass(frozen=True)
class Feed:
    notifications: list[NotificationView]
    next_since: datetime  # ask again with _since=this; items may repeat (same id), none is skipped


@dataclass(frozen=True)
class ChannelHealth:
    id: str
    site: str
    subscription: str
    topic: str | None
    health: str  # ok | waiting | gap | silent | error
    ehr_status: str | None
    form: str | None
    created_by_peerway: bool
    heartbeat_seconds: int | None
    last_seen_at: datetime | None
    last_heartbeat_at: datetime | None
    events_since_start: int | None
    highest_event: int
    contiguous_through: int
    missing_events: int
    silent_since: datetime | None
    last_recovery_at: datetime | None
    last_recovery_note: str | None
    pending_work: int
    failed_work: int


@dataclass(frozen=True)
class UpcomingDischarge:
    episode_id: str
    client_id: str
    peer_id: str | None
    expected_discharge_at: datetime
    readmission: bool


async def stay_permitted(
    session: AsyncSession, client: Client, episode: Episode, peer_id: str, now: datetime
) -> Decision | None:
    """The client's current consent decision for the assigned peer, if it permits admission-discharge (else None):
    the decision the peer's $peer-summary gets for the same stay. Whatever tells a peer of a client's stay (a
    readmission, an expected discharge, weeks counted from the discharge) is shown only under it, and audited."""
    holdings = Holdings.of(client, episode)
    actor = f"Practitioner/{peer_id}"
    decision = await decide(
        session, holdings, actor, assigned=True, categories=(DataCategory.ADMISSION_DISCHARGE,), at=now
    )
    return decision if DataCategory.ADMISSION_DISCHARGE in decision.permitted_categories() else None


async def record_readmission(session: AsyncSession, episode: Episode, now: datetime) -> None:
    """Tell the coordinators, and the assigned peer if the client's consent permits admission-discharge to them
    now, in the transaction that marks the episode readmitted. Nothing is disclosed yet: the peer's read is
    checked and audited again (`peer_feed`)."""
    session.add(
        store.Notification(
            audience=COORDINATOR,
            peer_id=None,
            event=READMITTED,
            client_id=episode.client_id,
            episode_id=episode.id,
            created_at=now,
        )
    )
    if episode.peer_id is None:
        return
    client = await session.get(Client, episode.client_id)
    if client is None or await stay_permitted(session, client, episode, episode.peer_id, now) is None:
        return
    session.add(
        store.Notification(
            audience=PEER,
            peer_id=episode.peer_id,
            event=READMITTED,
            client_id=episode.client_id,
            episode_id=episode.id,
            created_at=now,
        )
    )


def _next_since(rows: list[store.Notification], since: datetime | None, now: datetime, overlap: float) -> datetime:
    """Where the next poll starts: never past a point a transaction still running could commit before."""
    settled = now - timedelta(seconds=overlap)
    if not rows:
        return max(since, settled) if since is not None else settled
    newest = rows[-1].created_at
    if len(rows) >= FEED_PAGE:
        return newest - timedelta(microseconds=1)  # more to read; a tie on the last instant is read again
    return min(newest, settled) if since is None else max(since, min(newest, settled))


def _view(row: store.Notification) -> NotificationView:
    return NotificationView(
        id=row.id, event=row.event, client_id=row.client_id, episode_id=row.episode_id, created_at=row.created_at
    )


async def peer_feed(sessions: SessionFactory, peer_id: str, since: datetime | None, overlap: float) -> Feed:
    """The calling peer's notifications after `since`: only about clients who are theirs now, and only those the
    client's consent permits (admission-discharge, decided now). Each one delivered is a disclosure, audited in
    this read's transaction: if the audit cannot be written, nothing is answered."""
    now = utcnow()
    actor = f"Practitioner/{peer_id}"
    shown: list[store.Notification] = []
    async with transaction(sessions) as session:
        rows = list(await store.feed(session, PEER, peer_id, since, FEED_PAGE))
        peer = await session.get(PeerSupporter, peer_id) if rows else None
        for row in rows:
            if peer is None or row.event != READMITTED:  # an event with no consent rule here is not shown
                continue
            if await repository.episode_of_peer(session, peer_id, row.client_id) is None:
                continue  # not the peer's client any more
            client = await session.get(Client, row.client_id)
            episode = await session.get(Episode, row.episode_id)
            if client is None or episode is None:
                continue
            decision = await stay_permitted(session, client, episode, peer_id, now)
            if decision is None:
                continue
            record_disclosure(session, client.id, actor, peer.name, decision, (DataCategory.ADMISSION_DISCHARGE,), now)
            shown.append(row)
    # Where to go on from: past what was shown, never pointing at the time of one that was hidden (a full page
    # must name its last row, hidden or not, or the rest would be skipped).
    read = rows if len(rows) >= FEED_PAGE else shown
    return Feed([_view(r) for r in shown], _next_since(read, since, now, overlap))


async def coordinator_feed(sessions: SessionFactory, site: str, since: datetime | None, overlap: float) -> Feed:
    """The notifications addressed to the site's coordinators (about the site's clients) after `since`."""
    now = utcnow()
    async with sessions() as session:
        rows = list(await store.feed(session, COORDINATOR, None, since, FEED_PAGE, site=site))
    return Feed([_view(r) for r in rows], _next_since(rows, since, now, overlap))


async def _current(session: AsyncSession, episodes: list[Episode]) -> list[Episode]:
    """Only episodes that are their client's current one (an older stay never shows)."""
    kept = []
    for episode in episodes:
        current = await repository.current_episode(session, episode.client_id)
        if current is not None and current.id == episode.id:
            kept.append(episode)
    return kept


def _upcoming(episode: Episode) -> UpcomingDischarge:
    assert episode.expected_discharge_at is not None
    return UpcomingDischarge(
        episode_id=episode.id,
        client_id=episode.client_id,
        peer_id=episode.peer_id,
        expected_discharge_at=episode.expected_discharge_at,
        readmission=episode.readmission,
    )


async def upcoming_discharges(sessions: SessionFactory, site: str) -> list[UpcomingDischarge]:
    """The site's clients on the ward whose EHR named an expected discharge date, soonest first (coordinators).

    A date that has passed stays listed until the discharge arrives: it may be a discharge not yet sent.
    """
    async with sessions() as session:
        episodes = await _current(session, list(await store.on_ward_with_expected_discharge(session, site=site)))
    return [_upcoming(e) for e in episodes]


async def my_upcoming_discharges(sessions: SessionFactory, peer_id: str) -> list[UpcomingDischarge]:
    """The calling peer's clients on the ward with an expected discharge date their consent lets the peer see."""
    now = utcnow()
    shown: list[UpcomingDischarge] = []
    async with transaction(sessions) as session:
        peer = await session.get(PeerSupporter, peer_id)
        if peer is None:
            return []
        episodes = await _current(session, list(await store.on_ward_with_expected_discharge(session, peer_id)))
        actor = f"Practitioner/{peer_id}"
        for episode in episodes:
            client = await session.get(Client, episode.client_id)
            if client is None:
                continue
            decision = await stay_permitted(session, client, episode, peer_id, now)
            if decision is None:
                continue
            shown.append(_upcoming(episode))
            requested = (DataCategory.ADMISSION_DISCHARGE,)
            record_disclosure(session, client.id, actor, peer.name, decision, requested, now)
    return shown


# --- health --------------------------------------------------------------------------------------------------


async def channel_health(sessions: SessionFactory, settings: Settings, site: str | None = None) -> list[ChannelHealth]:
    """Every channel (of one site, when named: a site's coordinator sees only its own) as an operator needs to
    see it: alive, complete, recovering, failing."""
    now = utcnow()
    async with sessions() as session:
        rows = list(await store.channels(session, site))
        work = await jobs.work_counts(session)
        found: list[ChannelHealth] = []
        for channel in rows:
            held = await store.event_numbers_above(session, channel.id, channel.contiguous_through)
            missing = max(0, channel.highest_event - channel.contiguous_through - len(held))
            found.append(_health(channel, missing, work, now, settings))
    return found


def _health(
    channel: store.SubscriptionChannel,
    missing: int,
    work: dict[tuple[str | None, str], int],
    now: datetime,
    settings: Settings,
) -> ChannelHealth:
    period = channel.heartbeat_seconds or settings.subscription_heartbeat_seconds
    silent = bool(period) and now - (channel.last_seen_at or channel.created_at) > timedelta(seconds=2 * period)
    if channel.ehr_status in ("error", "off"):
        health = "error"
    elif silent:
        health = "silent"
    elif missing:
        health = "gap"
    elif channel.last_seen_at is None:
        health = "waiting"
    else:
        health = "ok"
    return ChannelHealth(
        id=channel.id,
        site=channel.site,
        subscription=channel.subscription,
        topic=channel.topic,
        health=health,
        ehr_status=channel.ehr_status,
        form=channel.form,
        created_by_peerway=channel.created_by_peerway,
        heartbeat_seconds=channel.heartbeat_seconds,
        last_seen_at=channel.last_seen_at,
        last_heartbeat_at=channel.last_heartbeat_at,
        events_since_start=channel.events_since_start,
        highest_event=channel.highest_event,
        contiguous_through=channel.contiguous_through,
        missing_events=missing,
        silent_since=channel.silent_since or (now if silent else None),
        last_recovery_at=channel.last_recovery_at,
        last_recovery_note=channel.last_recovery_note,
        pending_work=work.get((channel.id, "pending"), 0),
        failed_work=work.get((channel.id, "dead"), 0),
    )
