"""The safety net's rules, table-driven: which alerts a client's history calls for at a moment."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from service.domain import safety
from service.domain.outcomes import Period, outcomes_by_site
from service.domain.safety import EpisodeFacts, PeerFacts, Stint, Thresholds

OUT = datetime(2026, 3, 2, 10, tzinfo=UTC)
DAY = timedelta(days=1)


def episode(**kw: object) -> EpisodeFacts:
    base: dict[str, object] = {
        "id": "e1",
        "client_id": "c1",
        "site": "north",
        "started_at": OUT - 5 * DAY,
        "discharged_at": OUT,
    }
    return EpisodeFacts(**{**base, **kw})  # type: ignore[arg-type]


def weekly(weeks: int, minutes: int = 60, skip: frozenset[int] = frozenset()) -> tuple[tuple[datetime, int], ...]:
    return tuple((OUT + (7 * k + 2) * DAY, minutes) for k in range(weeks) if k not in skip)


PEER = (Stint("p1", OUT + DAY),)
CASES = [
    ("six days: no contact is not yet overdue, no peer is", episode(), 6, {"unassigned"}),
    ("two days: nothing is overdue yet", episode(), 2, set()),
    ("seven days, nobody assigned or in touch", episode(), 7, {"no-contact", "unassigned"}),
    ("three days without a peer", episode(), 3, {"unassigned"}),
    ("assigned, silent for a week", episode(stints=PEER), 7, {"no-contact"}),
    ("assigned, contacted", episode(stints=PEER, contacts=weekly(1)), 7, set()),
    (
        "a contact after now has not happened yet",
        episode(stints=PEER, contacts=((OUT + 9 * DAY, 60),)),
        8,
        {"no-contact"},
    ),
    ("closed before now", episode(closed_at=OUT + 5 * DAY), 30, set()),
    ("one low week", episode(stints=PEER, contacts=weekly(4, skip=frozenset({2}))), 28, set()),
    ("two low weeks running", episode(stints=PEER, contacts=weekly(4, skip=frozenset({2, 3}))), 28, {"below-minimum"}),
    ("59 minutes is under an hour", episode(stints=PEER, contacts=weekly(2, minutes=59)), 14, {"below-minimum"}),
    ("not yet discharged", episode(discharged_at=OUT + 20 * DAY), 10, set()),
]


@pytest.mark.parametrize(("why", "facts", "days", "kinds"), CASES, ids=[c[0] for c in CASES])
def test_episode_alerts(why: str, facts: EpisodeFacts, days: int, kinds: set[str]) -> None:
    due = safety.due_alerts([facts], [], {}, 28, OUT + days * DAY + timedelta(hours=1))
    assert {d.kind for d in due} == kinds


def test_the_same_condition_has_the_same_key_whenever_it_is_seen() -> None:
    facts = episode(stints=PEER, contacts=weekly(6, skip=frozenset({2, 3, 4})))
    keys = {
        (d.kind, d.subject, d.period)
        for days in (21, 28, 35)
        for d in safety.due_alerts([facts], [], {}, 28, OUT + days * DAY + timedelta(hours=1))
    }
    assert keys == {("below-minimum", "e1", (OUT + 14 * DAY).date().isoformat())}


def test_a_readmission_ends_the_community_phase_and_a_site_may_ask_for_less() -> None:
    first = episode(stints=PEER)
    again = episode(id="e2", started_at=OUT + 3 * DAY, discharged_at=OUT + 40 * DAY, previous_episode_id="e1")
    assert safety.due_alerts([first, again], [], {}, 28, OUT + 10 * DAY) == []
    lenient = {"north": Thresholds(no_contact_days=14)}
    assert safety.due_alerts([episode(stints=PEER)], [], lenient, 28, OUT + 10 * DAY) == []


def test_supervision_and_cover() -> None:
    start = OUT - 60 * DAY
    peers = [
        PeerFacts("p1", "org", "paused", start, (date(2026, 2, 20),)),
        PeerFacts("p2", "org", "active", start, ()),
        PeerFacts("p3", "org", "inactive", start, ()),
    ]
    due = safety.due_alerts([episode(stints=PEER, contacts=weekly(1))], peers, {}, 28, OUT + 3 * DAY)
    assert {(d.kind, d.subject, d.organization or d.site) for d in due} == {
        ("supervision-overdue", "p2", "org"),
        ("cover-needed", "e1", "north"),
    }


def test_outcomes_count_complete_weeks_and_followed_readmissions() -> None:
    first = episode(
        stints=PEER, contacts=weekly(3, skip=frozenset({1})), closed_at=OUT + 21 * DAY, closure_reason="no-contact"
    )
    again = episode(id="e2", started_at=OUT + 25 * DAY, discharged_at=OUT + 30 * DAY, previous_episode_id="e1")
    period = Period(OUT - DAY, OUT + 60 * DAY)
    figures = outcomes_by_site([first, again], period, OUT + 200 * DAY, {}, 60)["north"]
    assert (figures.discharged, figures.client_weeks, figures.weeks_meeting_minimum) == (2, 3 + 4, 2)
    assert (figures.followed_30, figures.readmitted_30, figures.drop_outs) == (2, 1, 1)
    assert figures.first_contact_days == [2.0]
    assert figures.first_contact_bands["none"] == 1
