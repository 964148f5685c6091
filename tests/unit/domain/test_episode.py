"""The Episode aggregate, rule by rule (service/domain/episode.py): hospital events and the program's work on it.

Each table row is one of the rules in the module's docstring, with the answer the EHR's sender gets in words.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from service.domain.episode import CareTeamChanged, Episode, EpisodeClosed, Readmitted
from service.domain.stay import EncounterSnapshot, HospitalEventKind, PatientSnapshot, Stay
from service.domain.vocabulary import IN_COMMUNITY, ON_WARD

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
ADMIT, TRANSFER, DISCHARGE = HospitalEventKind.ADMIT, HospitalEventKind.TRANSFER, HospitalEventKind.DISCHARGE


def hours(n: float) -> datetime:
    return T0 + timedelta(hours=n)


def stay(
    kind: HospitalEventKind | None = ADMIT,
    *,
    encounter: str = "enc-1",
    start: datetime | None = T0,
    end: datetime | None = None,
    status: str = "in-progress",
    updated: datetime | None = None,
    readmission: bool = False,
    disposition: str | None = None,
    expected: datetime | None = None,
    json: str = '{"resourceType": "Encounter"}',
) -> Stay:
    snapshot = EncounterSnapshot(
        ehr_id=encounter,
        status=status,
        start=start,
        end=end,
        discharge_disposition=disposition,
        readmission=readmission,
        resource_json=json,
        updated_at=updated,
        expected_end=expected,
    )
    return Stay(snapshot, PatientSnapshot("p-1", '{"resourceType": "Patient"}'), kind)


def receive(
    episode: Episode | None, event: Stay, at: datetime, previous: Episode | None = None, sent: datetime | None = None
) -> tuple[Episode | None, str]:
    """What intake does with one event: open an episode for an unknown stay, then apply the event."""
    if episode is None:
        episode = Episode.open_for_stay(f"ep-{event.encounter.ehr_id}", "c-1", event, previous, sent, at)
        if episode is None:
            return None, "a stay older than the client's current one; recorded without effect"
        return episode, episode.apply_stay(event, sent, at, opened=True)
    return episode, episode.apply_stay(event, sent, at, opened=False)


# --- opening and moving ------------------------------------------------------------------------------------

FIRST_EVENT = [
    pytest.param(stay(ADMIT), "episode opened on the ward", ON_WARD, id="admit of an unknown stay"),
    pytest.param(stay(TRANSFER), "episode opened on the ward", ON_WARD, id="transfer of an unknown stay"),
    pytest.param(
        stay(DISCHARGE, end=hours(30), status="finished"),
        "episode opened in the community",
        IN_COMMUNITY,
        id="discharge of a stay never seen",
    ),
    pytest.param(
        stay(ADMIT, readmission=True),
        "episode opened on the ward (readmission)",
        ON_WARD,
        id="admit carrying hospitalization.reAdmission",
    ),
]


@pytest.mark.parametrize(("event", "effect", "state"), FIRST_EVENT)
def test_the_first_event_of_a_stay_opens_its_episode(event: Stay, effect: str, state: str) -> None:
    episode, said = receive(None, event, hours(1))
    assert episode is not None
    assert (said, episode.state) == (effect, state)
    assert episode.admitted_at == T0
    assert episode.encounter_json == event.encounter.resource_json


LATER_EVENTS = [
    pytest.param(
        [stay(ADMIT), stay(DISCHARGE, end=hours(30), status="finished")],
        "episode moved to the community",
        IN_COMMUNITY,
        id="admit then discharge",
    ),
    pytest.param(
        [stay(ADMIT), stay(TRANSFER, updated=hours(2))], "episode updated", ON_WARD, id="a transfer updates the stay"
    ),
    pytest.param(
        [stay(DISCHARGE, end=hours(30), status="finished"), stay(ADMIT)],
        "stay already discharged; late event recorded without effect",
        IN_COMMUNITY,
        id="state only moves forward: a late admit after the discharge",
    ),
    pytest.param(
        [stay(ADMIT, updated=hours(5)), stay(TRANSFER, updated=hours(3))],
        "an older snapshot of the stay; recorded without effect",
        ON_WARD,
        id="an older snapshot of an on-ward stay is not kept",
    ),
    pytest.param(
        [
            stay(DISCHARGE, end=hours(30), status="finished", updated=hours(31)),
            stay(DISCHARGE, end=hours(29), status="finished", updated=hours(29)),
        ],
        "an older snapshot of a discharged stay; recorded without effect",
        IN_COMMUNITY,
        id="an older discharge snapshot of a discharged stay",
    ),
    pytest.param(
        [stay(ADMIT, updated=hours(5)), stay(DISCHARGE, end=hours(30), status="finished", updated=hours(3))],
        "episode moved to the community",
        IN_COMMUNITY,
        id="a discharge still moves an on-ward stay, whatever its snapshot's age",
    ),
    pytest.param(
        [stay(ADMIT), stay(TRANSFER, readmission=True)],
        "episode marked readmitted",
        ON_WARD,
        id="the EHR marks a known stay as a readmission",
    ),
]


@pytest.mark.parametrize(("events", "effect", "state"), LATER_EVENTS)
def test_later_events_of_the_same_stay(events: list[Stay], effect: str, state: str) -> None:
    episode: Episode | None = None
    said = ""
    for n, event in enumerate(events):
        episode, said = receive(episode, event, hours(40 + n))
    assert episode is not None
    assert (said, episode.state) == (effect, state)


def test_a_discharge_keeps_its_date_disposition_and_newest_snapshot() -> None:
    episode, _ = receive(None, stay(ADMIT, updated=hours(1)), hours(1))
    assert episode is not None
    episode.apply_stay(
        stay(DISCHARGE, end=hours(30), status="finished", updated=hours(31), disposition="home" * 20),
        None,
        hours(32),
        opened=False,
    )
    assert episode.discharged_at == hours(30)
    assert episode.discharge_disposition == ("home" * 20)[:64]
    assert episode.snapshot_at == hours(31)
    assert episode.expected_discharge_at is None


@pytest.mark.parametrize(
    ("end", "sent", "at", "expected"),
    [
        pytest.param(None, hours(2), hours(3), hours(2), id="no end: the event's time"),
        pytest.param(None, None, hours(3), hours(3), id="no end, no event time: now"),
        pytest.param(hours(1), hours(2), hours(3), hours(1), id="the Encounter's end"),
    ],
)
def test_the_discharge_date(end: datetime | None, sent: datetime | None, at: datetime, expected: datetime) -> None:
    episode, _ = receive(None, stay(DISCHARGE, end=end, status="finished"), at, sent=sent)
    assert episode is not None
    assert episode.discharged_at == expected


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        pytest.param(stay(expected=hours(72)), hours(72), id="the date the EHR named"),
        pytest.param(stay(end=hours(48)), hours(48), id="an in-progress stay's period.end after the event"),
        pytest.param(stay(end=hours(-1)), None, id="a period.end already past"),
        pytest.param(stay(end=hours(48), status="planned"), None, id="not in progress"),
        pytest.param(stay(end=hours(48), status="onleave"), hours(48), id="on leave"),
    ],
)
def test_the_expected_discharge_of_an_on_ward_stay(event: Stay, expected: datetime | None) -> None:
    episode, _ = receive(None, event, hours(1), sent=hours(1))
    assert episode is not None
    assert episode.expected_discharge_at == expected


# --- a new stay: older ones, readmission, the peer carried over ----------------------------------------------


def discharged_with_peer() -> Episode:
    episode, _ = receive(None, stay(DISCHARGE, end=hours(30), status="finished"), hours(31))
    assert episode is not None
    episode.assign("peer-1", hours(32))
    episode.take_events()
    return episode


def test_a_stay_older_than_the_current_one_never_becomes_current() -> None:
    current = discharged_with_peer()
    found, said = receive(None, stay(ADMIT, encounter="enc-0", start=T0 - timedelta(days=9)), hours(40), current)
    assert found is None
    assert said == "a stay older than the client's current one; recorded without effect"
    assert current.peer_id == "peer-1"


def test_a_new_stay_after_discharge_is_a_readmission_that_keeps_the_peer() -> None:
    previous = discharged_with_peer()
    episode, said = receive(None, stay(ADMIT, encounter="enc-2", start=hours(100)), hours(100), previous)
    assert episode is not None
    assert said == "episode opened on the ward (readmission)"
    assert episode.readmission
    assert episode.previous_episode_id == previous.id
    assert episode.peer_id == "peer-1"
    assert previous.peer_id is None
    assert previous.assignments[-1].end_kind == "new-stay"
    assert previous.take_events() == [CareTeamChanged(previous.id)]
    assert episode.take_events() == [CareTeamChanged(episode.id), Readmitted(episode.id, "c-1", "peer-1")]


def test_a_new_stay_while_still_on_the_ward_is_no_readmission_but_keeps_the_peer() -> None:
    previous, _ = receive(None, stay(ADMIT), hours(1))
    assert previous is not None
    previous.assign("peer-1", hours(2))
    episode, said = receive(None, stay(ADMIT, encounter="enc-2", start=hours(3)), hours(3), previous)
    assert episode is not None
    assert said == "episode opened on the ward"
    assert not episode.readmission
    assert episode.peer_id == "peer-1"
    assert not any(isinstance(e, Readmitted) for e in episode.take_events())


def test_marking_a_known_stay_readmitted_tells_once() -> None:
    episode, _ = receive(None, stay(ADMIT), hours(1))
    assert episode is not None
    episode.take_events()
    episode.apply_stay(stay(TRANSFER, readmission=True), None, hours(2), opened=False)
    said = episode.apply_stay(stay(TRANSFER, readmission=True, updated=hours(3)), None, hours(3), opened=False)
    assert said == "episode updated"
    assert episode.take_events() == [Readmitted(episode.id, "c-1", None)]


# --- the program's work: assignments and endings -------------------------------------------------------------


def test_assigning_replacing_and_the_history() -> None:
    episode, _ = receive(None, stay(ADMIT), hours(1))
    assert episode is not None
    episode.take_events()
    assert episode.assign("peer-1", hours(2), suggested=True, score=9.0)
    assert not episode.assign("peer-1", hours(3))  # already theirs: nothing changes
    assert episode.assign("peer-2", hours(4))
    assert [(a.peer_id, a.started_at, a.ended_at, a.end_kind) for a in episode.assignments] == [
        ("peer-1", hours(2), hours(4), "replaced"),
        ("peer-2", hours(4), None, None),
    ]
    assert (episode.peer_id, episode.assigned_at) == ("peer-2", hours(4))
    assert set(episode.take_events()) == {CareTeamChanged(episode.id)}


def test_a_rematch_ends_the_pair_and_keeps_the_peer_away() -> None:
    episode = discharged_with_peer()
    assert episode.rematch(hours(50), requested_by="client", reason="no-connection", note="tennis") == "peer-1"
    last = episode.assignments[-1]
    assert (last.end_kind, last.end_reason, last.requested_by, last.note) == (
        "rematch",
        "no-connection",
        "client",
        "tennis",
    )
    assert episode.peer_id is None
    assert episode.rematched_peers() == {"peer-1"}
    assert episode.take_events() == [CareTeamChanged(episode.id)]
    assert episode.rematch(hours(51), requested_by="client", reason="other") is None  # nobody left to rematch


def test_ending_an_episode_frees_the_peer_and_closes_it() -> None:
    episode = discharged_with_peer()
    episode.end(hours(60), "completed", "settled at home")
    assert episode.closed
    assert episode.closure is not None
    assert (episode.closure.reason, episode.closure.note) == ("completed", "settled at home")
    assert episode.assignments[-1].end_kind == "episode-ended"
    assert episode.assignments[-1].end_reason == "completed"
    with pytest.raises(EpisodeClosed):
        episode.assign("peer-2", hours(61))
    with pytest.raises(EpisodeClosed):
        episode.end(hours(62), "completed")


def test_ending_an_episode_without_a_peer_changes_no_care_team() -> None:
    episode, _ = receive(None, stay(ADMIT), hours(1))
    assert episode is not None
    episode.take_events()
    episode.end(hours(2), "client-withdrew")
    assert episode.take_events() == []


def test_events_are_taken_once() -> None:
    episode = discharged_with_peer()
    episode.assign("peer-2", hours(70))
    assert episode.take_events()
    assert episode.take_events() == []
    assert replace(episode.assignments[0], key=5).key == 5
