"""The safety net's rules, pure: which alerts are due at a moment, from what had happened by then.

Everything is judged "as of now": a contact, an assignment, a closure or a readmission dated after `now` has not
happened yet. That makes the rules a function of history, so a job run with a controlled clock over a seeded
year sees exactly what a worker running through that year would have seen.

Client-weeks are counted from the client's discharge (week k is [discharge + 7k, discharge + 7k + 7)), so every
client's first week is a whole one; a week counts once complete and only while the client was still in the
program (not closed, not back in hospital) at its end.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

NO_CONTACT = "no-contact"  # discharged, no peer contact within N days
UNASSIGNED = "unassigned"  # discharged, no peer assigned within M days
BELOW_MINIMUM = "below-minimum"  # two client-weeks running under the weekly minimum
SUPERVISION_OVERDUE = "supervision-overdue"  # a peer's supervision check-in is overdue
COVER_NEEDED = "cover-needed"  # a paused peer's client needs cover
KINDS = (NO_CONTACT, UNASSIGNED, BELOW_MINIMUM, SUPERVISION_OVERDUE, COVER_NEEDED)
WEEK = timedelta(days=7)


@dataclass(frozen=True)
class Thresholds:
    """A site's safety-net settings: the rules' thresholds, and whether its EHR gets a Flag for each alert about
    a client not reached (no-contact, unassigned)."""

    no_contact_days: int = 7
    unassigned_days: int = 3
    weekly_minimum_minutes: int = 60
    ehr_flags: bool = False


EHR_FLAG_KINDS = frozenset({"no-contact", "unassigned"})


@dataclass(frozen=True)
class Stint:
    """One assignment of a peer to an episode."""

    peer_id: str
    started_at: datetime
    ended_at: datetime | None = None
    end_kind: str | None = None


@dataclass(frozen=True)
class EpisodeFacts:
    """What the rules and the outcomes read of one episode (no clinical data, no names)."""

    id: str
    client_id: str
    site: str
    started_at: datetime  # admission, or when Peerway first heard of the stay
    discharged_at: datetime | None
    previous_episode_id: str | None = None
    closed_at: datetime | None = None
    closure_reason: str | None = None
    stints: tuple[Stint, ...] = ()
    contacts: tuple[tuple[datetime, int], ...] = ()  # (started_at, minutes) of contacts not cancelled


@dataclass(frozen=True)
class PeerFacts:
    id: str
    organization: str
    status: str  # active | paused | inactive
    created_at: datetime
    check_ins: tuple[date, ...] = ()
    paused_since: datetime | None = None  # when the safety net first saw this pause


@dataclass(frozen=True)
class Due:
    """An alert the facts call for. (kind, subject, period) names it: the same condition always yields the same
    key, so a job run twice finds its alert already there."""

    kind: str
    subject: str
    period: str
    site: str | None = None
    organization: str | None = None
    detail: Mapping[str, str | int | None] = field(default_factory=dict)


@dataclass(frozen=True)
class Week:
    start: datetime
    contacts: int
    minutes: int


def successors(episodes: Iterable[EpisodeFacts]) -> dict[str, datetime]:
    """Episode id -> when the client's next stay began (the readmission that took them out of the community)."""
    out: dict[str, datetime] = {}
    for e in episodes:
        if e.previous_episode_id is not None:
            known = out.get(e.previous_episode_id)
            out[e.previous_episode_id] = e.started_at if known is None else min(known, e.started_at)
    return out


def community_end(e: EpisodeFacts, readmitted_at: datetime | None) -> datetime | None:
    """When the client left the program's community phase: the episode closed or the client went back in."""
    ends = [t for t in (e.closed_at, readmitted_at) if t is not None]
    return min(ends) if ends else None


def in_community(e: EpisodeFacts, readmitted_at: datetime | None, now: datetime) -> bool:
    if e.discharged_at is None or e.discharged_at > now:
        return False
    end = community_end(e, readmitted_at)
    return end is None or end > now


def peer_at(e: EpisodeFacts, when: datetime) -> str | None:
    for s in e.stints:
        if s.started_at <= when and (s.ended_at is None or s.ended_at > when):
            return s.peer_id
    return None


def first_assigned(e: EpisodeFacts) -> datetime | None:
    return min((s.started_at for s in e.stints), default=None)


def first_contact(e: EpisodeFacts, after: datetime) -> datetime | None:
    return min((t for t, _ in e.contacts if t >= after), default=None)


def weeks(e: EpisodeFacts, readmitted_at: datetime | None, as_of: datetime) -> list[Week]:
    """The episode's complete client-weeks by `as_of`, in the community all through."""
    if e.discharged_at is None:
        return []
    limit = as_of
    end = community_end(e, readmitted_at)
    if end is not None:
        limit = min(limit, end)
    count = max(0, (limit - e.discharged_at) // WEEK)
    contacts, minutes = [0] * count, [0] * count
    for t, m in e.contacts:  # one pass: each contact into its week
        if t >= e.discharged_at and (k := (t - e.discharged_at) // WEEK) < count:
            contacts[k] += 1
            minutes[k] += m
    return [Week(e.discharged_at + k * WEEK, contacts[k], minutes[k]) for k in range(count)]


def below_minimum_run(complete: Sequence[Week], minimum: int) -> Week | None:
    """The first week of the run of weeks under the minimum that the latest week ends, if it is 2+ weeks long."""
    run: list[Week] = []
    for w in reversed(complete):
        if w.minutes >= minimum:
            break
        run.append(w)
    return run[-1] if len(run) >= 2 else None


def _day(t: datetime) -> str:
    return t.date().isoformat()


def episode_alerts(e: EpisodeFacts, readmitted_at: datetime | None, t: Thresholds, now: datetime) -> list[Due]:
    """The alerts due for one episode at `now`."""
    if not in_community(e, readmitted_at, now):
        return []
    assert e.discharged_at is not None
    due: list[Due] = []
    peer = peer_at(e, now)
    since = now - e.discharged_at
    base = {"client_id": e.client_id, "episode_id": e.id, "peer_id": peer, "discharged_at": e.discharged_at.isoformat()}
    contacts_by_now = [c for c in e.contacts if e.discharged_at <= c[0] <= now]
    if not contacts_by_now and since >= timedelta(days=t.no_contact_days):
        due.append(Due(NO_CONTACT, e.id, _day(e.discharged_at), e.site, None, {**base, "days": since.days}))
    never_assigned = not any(s.started_at <= now for s in e.stints)  # a re-match's gap is the coordinator's own
    if never_assigned and since >= timedelta(days=t.unassigned_days):
        due.append(Due(UNASSIGNED, e.id, _day(e.discharged_at), e.site, None, {**base, "days": since.days}))
    run = below_minimum_run(weeks(e, readmitted_at, now), t.weekly_minimum_minutes)
    if run is not None:
        detail = {**base, "run_start": run.start.isoformat(), "minimum": t.weekly_minimum_minutes}
        due.append(Due(BELOW_MINIMUM, e.id, _day(run.start), e.site, None, detail))
    return due


def supervision_alerts(p: PeerFacts, every_days: int, now: datetime) -> list[Due]:
    """A peer still in the program whose last check-in (or their start) is more than `every_days` ago."""
    if p.status == "inactive":
        return []
    held = [d for d in p.check_ins if d <= now.date()]
    last = max(held) if held else p.created_at.date()
    due_on = last + timedelta(days=every_days)
    if now.date() <= due_on:
        return []
    detail = {"peer_id": p.id, "last_check_in": max(held).isoformat() if held else None, "due": due_on.isoformat()}
    return [Due(SUPERVISION_OVERDUE, p.id, due_on.isoformat(), None, p.organization, detail)]


def pause_key(peer_id: str, since: datetime) -> str:
    """Which pause: its start and the peer (a second pause is a new occurrence, with its own alerts)."""
    return f"{since.astimezone(UTC):%Y%m%dT%H%M%SZ}/{peer_id}"[:64]


def cover_alerts(
    e: EpisodeFacts, readmitted_at: datetime | None, paused: Mapping[str, datetime], now: datetime
) -> list[Due]:
    """A client whose peer is paused needs cover (on the ward or in the community, while the episode is open);
    `paused`: peer id -> since when, which names the occurrence."""
    if (e.closed_at is not None and e.closed_at <= now) or (readmitted_at is not None and readmitted_at <= now):
        return []
    peer = peer_at(e, now)
    if peer is None or peer not in paused:
        return []
    detail = {"client_id": e.client_id, "episode_id": e.id, "peer_id": peer, "paused_since": paused[peer].isoformat()}
    return [Due(COVER_NEEDED, e.id, pause_key(peer, paused[peer]), e.site, None, detail)]


def due_alerts(
    episodes: Sequence[EpisodeFacts],
    peers: Sequence[PeerFacts],
    thresholds: Mapping[str, Thresholds],
    supervision_every_days: int,
    now: datetime,
    default: Thresholds = Thresholds(),
) -> list[Due]:
    """Every alert due at `now`. `thresholds` by site (a site not named gets `default`)."""
    readmitted = successors(e for e in episodes if e.started_at <= now)
    paused = {p.id: p.paused_since or p.created_at for p in peers if p.status == "paused"}
    due: list[Due] = []
    for e in episodes:
        if e.started_at > now:
            continue
        later = readmitted.get(e.id)
        due += episode_alerts(e, later, thresholds.get(e.site, default), now)
        due += cover_alerts(e, later, paused, now)
    for p in peers:
        if p.created_at <= now:
            due += supervision_alerts(p, supervision_every_days, now)
    return due
