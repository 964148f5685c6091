"""The program's outcomes, pure: counts and durations over a period, per site, from the same facts the safety
net reads (domain/safety.py). Nothing here names a client; callers suppress small cells before showing strata.

Definitions (docs/outcomes.md): a discharge counts in the period its discharge falls in; time to first contact
runs from discharge to the first peer contact not cancelled; client-weeks are counted from discharge, complete
ones only, while the client was in the community (safety.weeks) and counted in the period their first day falls
in; a readmission within N days is the client's next stay beginning at most N days after discharge, over
discharges followed up for N days by the time of the report; a drop-out is an episode ended as client-withdrew or
no-contact; a re-match is an assignment ended as a re-match; an active peer held at least one client during the
period, and their caseload is the number of clients they held. Strata by peer organization attribute a client
to the organization of their first peer in the episode (clients never matched: "none").
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from service.domain.safety import EpisodeFacts, Week, successors, weeks

DROP_OUT_REASONS = frozenset({"client-withdrew", "no-contact"})
REMATCH = "rematch"
# Bands of days from discharge to first contact: (label, from, to) with `to` exclusive; None: open-ended.
BANDS: tuple[tuple[str, float, float | None], ...] = (
    ("0-2", 0, 3),
    ("3-7", 3, 8),
    ("8-14", 8, 15),
    ("15-30", 15, 31),
    ("31+", 31, None),
)
NONE_YET = "none"


@dataclass(frozen=True)
class Period:
    start: datetime
    end: datetime  # exclusive

    def holds(self, t: datetime | None) -> bool:
        return t is not None and self.start <= t < self.end


@dataclass
class SiteOutcomes:
    """One site's figures for the period (or every site's together)."""

    discharged: int = 0
    first_contact_days: list[float] = field(default_factory=list)  # one per discharge with a contact
    client_weeks: int = 0
    contacts: int = 0
    minutes: int = 0
    weeks_meeting_minimum: int = 0
    followed_30: int = 0
    readmitted_30: int = 0
    followed_90: int = 0
    readmitted_90: int = 0
    drop_outs: int = 0
    rematches: int = 0
    caseloads: dict[str, int] = field(default_factory=dict)  # peer id -> clients held in the period
    # For charts: readmissions by discharge month (month -> (followed, readmitted within 30 days)) and contact
    # minutes by calendar week (Monday -> (client-weeks, minutes)).
    readmissions_by_month: dict[str, tuple[int, int]] = field(default_factory=dict)
    minutes_by_week: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def median_first_contact_days(self) -> float | None:
        return statistics.median(self.first_contact_days) if self.first_contact_days else None

    @property
    def first_contact_bands(self) -> dict[str, int]:
        counts = dict.fromkeys([b[0] for b in BANDS] + [NONE_YET], 0)
        for days in self.first_contact_days:
            for label, low, high in BANDS:
                if days >= low and (high is None or days < high):
                    counts[label] += 1
                    break
        counts[NONE_YET] = self.discharged - len(self.first_contact_days)
        return counts

    @property
    def active_peers(self) -> int:
        return len(self.caseloads)

    @property
    def peer_client_pairs(self) -> int:
        return sum(self.caseloads.values())


def _readmitted_within(e: EpisodeFacts, later: datetime | None, days: int, as_of: datetime) -> tuple[bool, bool]:
    """(followed up for `days` by as_of, readmitted within them)."""
    assert e.discharged_at is not None
    horizon = e.discharged_at + timedelta(days=days)
    if horizon > as_of:
        return False, False
    return True, later is not None and later <= horizon


def _week_label(w: Week) -> str:
    monday = w.start.date() - timedelta(days=w.start.weekday())
    return monday.isoformat()


def _add(into: dict[str, tuple[int, int]], key: str, a: int, b: int) -> None:
    x, y = into.get(key, (0, 0))
    into[key] = (x + a, y + b)


def _episode(
    out: SiteOutcomes, e: EpisodeFacts, later: datetime | None, period: Period, as_of: datetime, minimum: int
) -> None:
    if period.holds(e.discharged_at) and e.discharged_at is not None and e.discharged_at <= as_of:
        out.discharged += 1
        first = min((t for t, _ in e.contacts if e.discharged_at <= t <= as_of), default=None)
        if first is not None:
            out.first_contact_days.append((first - e.discharged_at).total_seconds() / 86_400)
        followed, again = _readmitted_within(e, later, 30, as_of)
        out.followed_30 += followed
        out.readmitted_30 += again
        if followed:
            _add(out.readmissions_by_month, e.discharged_at.strftime("%Y-%m"), 1, int(again))
        followed, again = _readmitted_within(e, later, 90, as_of)
        out.followed_90 += followed
        out.readmitted_90 += again
    for w in weeks(e, later, min(as_of, period.end)):
        if period.holds(w.start):
            out.client_weeks += 1
            out.contacts += w.contacts
            out.minutes += w.minutes
            out.weeks_meeting_minimum += w.minutes >= minimum
            _add(out.minutes_by_week, _week_label(w), 1, w.minutes)
    if e.closure_reason in DROP_OUT_REASONS and period.holds(e.closed_at) and e.closed_at is not None:
        out.drop_outs += e.closed_at <= as_of
    held: set[str] = set()
    for s in e.stints:
        if s.end_kind == REMATCH and period.holds(s.ended_at) and s.ended_at is not None and s.ended_at <= as_of:
            out.rematches += 1
        # An assignment left open on an ended episode ends with it: the peer no longer holds that client.
        ends = s.ended_at or e.closed_at or period.end
        if s.started_at < min(period.end, as_of) and ends > period.start:
            held.add(s.peer_id)
    for peer in held:
        out.caseloads[peer] = out.caseloads.get(peer, 0) + 1


def outcomes_by_site(
    episodes: Sequence[EpisodeFacts],
    period: Period,
    as_of: datetime,
    minimum_by_site: Mapping[str, int],
    default_minimum: int,
    sites: Iterable[str] = (),
    *,
    group: Callable[[EpisodeFacts], str] | None = None,
) -> dict[str, SiteOutcomes]:
    """Each site's outcomes for the period, as known at `as_of` (sites named in `sites` appear even if empty);
    or, with `group`, the outcomes of each group of episodes it names (see `organization_of`)."""
    later = successors(e for e in episodes if e.started_at <= as_of)
    out: dict[str, SiteOutcomes] = {site: SiteOutcomes() for site in sites}
    for e in episodes:
        if e.started_at > as_of:
            continue
        figures = out.setdefault(group(e) if group else e.site, SiteOutcomes())
        _episode(figures, e, later.get(e.id), period, as_of, minimum_by_site.get(e.site, default_minimum))
    return out


UNMATCHED = "none"  # the organization stratum of clients never matched with a peer


def organization_of(organizations: Mapping[str, str]) -> Callable[[EpisodeFacts], str]:
    """Group episodes by the peer organization of the client's first peer in the episode: the organization that
    took the client on (a later re-match to another organization's peer does not move the client)."""

    def group(e: EpisodeFacts) -> str:
        first = min(e.stints, key=lambda s: s.started_at, default=None)
        return UNMATCHED if first is None else organizations.get(first.peer_id, UNMATCHED)

    return group


def combined(per_site: Mapping[str, SiteOutcomes]) -> SiteOutcomes:
    """Every site's figures together (a peer serving two sites counts once, with their clients at both)."""
    total = SiteOutcomes()
    for s in per_site.values():
        total.discharged += s.discharged
        total.first_contact_days += s.first_contact_days
        total.client_weeks += s.client_weeks
        total.contacts += s.contacts
        total.minutes += s.minutes
        total.weeks_meeting_minimum += s.weeks_meeting_minimum
        total.followed_30 += s.followed_30
        total.readmitted_30 += s.readmitted_30
        total.followed_90 += s.followed_90
        total.readmitted_90 += s.readmitted_90
        total.drop_outs += s.drop_outs
        total.rematches += s.rematches
        for peer, n in s.caseloads.items():
            total.caseloads[peer] = total.caseloads.get(peer, 0) + n
        for month, (a, b) in s.readmissions_by_month.items():
            _add(total.readmissions_by_month, month, a, b)
        for week, (a, b) in s.minutes_by_week.items():
            _add(total.minutes_by_week, week, a, b)
    return total
