"""Cancellations (HL7 v2 A11, A12, A13) on the Episode aggregate: what each does to the state, the peer's
period, and what it leaves alone."""

from __future__ import annotations

import pytest

from service.domain.episode import CareTeamChanged, Episode
from service.domain.vocabulary import ADMISSION_CANCELLED, EPISODE_ENDED, IN_COMMUNITY, ON_WARD
from tests.unit.domain.test_episode import ADMIT, DISCHARGE, T0, hours, receive, stay

CANCELLED = stay(None, status="in-progress", json='{"cancelled": true}')


def admitted(encounter: str = "enc-1", previous: Episode | None = None) -> Episode:
    episode, _ = receive(None, stay(ADMIT, encounter=encounter), T0, previous)
    assert episode is not None
    return episode


def discharged() -> Episode:
    episode = admitted()
    receive(episode, stay(DISCHARGE, end=hours(48), status="finished", disposition="home"), hours(48))
    return episode


def test_a_cancelled_discharge_puts_the_stay_back_on_the_ward_with_its_peer() -> None:
    episode = discharged()
    episode.assign("peer-1", hours(50))
    episode.take_events()
    answer = episode.cancel_discharge(stay(None, expected=hours(96), json='{"back": true}'), hours(51))
    assert answer == "discharge cancelled; episode back on the ward"
    assert (episode.state, episode.discharged_at, episode.discharge_disposition) == (ON_WARD, None, None)
    assert (episode.encounter_json, episode.expected_discharge_at) == ('{"back": true}', hours(96))
    assert (episode.peer_id, episode.take_events()) == ("peer-1", [])  # no CareTeam change, nobody notified


@pytest.mark.parametrize(
    ("make", "cancel", "answer"),
    [
        (admitted, "cancel_discharge", "stay not discharged; cancellation recorded without effect"),
        (discharged, "cancel_transfer", "stay not on the ward; cancellation recorded without effect"),
    ],
)
def test_a_cancellation_that_does_not_fit_the_stay_changes_nothing(make: object, cancel: str, answer: str) -> None:
    episode = make()  # type: ignore[operator]
    before = (episode.state, episode.encounter_json, episode.discharged_at)
    assert getattr(episode, cancel)(CANCELLED, hours(60)) == answer
    assert (episode.state, episode.encounter_json, episode.discharged_at) == before


def test_a_cancelled_transfer_takes_the_snapshot_the_message_describes() -> None:
    episode = admitted()
    assert episode.cancel_transfer(CANCELLED, hours(3)) == "transfer cancelled; episode updated"
    assert (episode.state, episode.encounter_json) == (ON_WARD, '{"cancelled": true}')


def test_a_cancelled_admission_closes_the_episode_and_frees_its_peer() -> None:
    episode = admitted()
    episode.assign("peer-1", hours(1))
    episode.take_events()
    assert episode.withdraw(CANCELLED, None, hours(2)) == "admission cancelled; episode closed"
    assert episode.closure is not None
    assert episode.closure.reason == ADMISSION_CANCELLED
    assert (episode.peer_id, episode.assignments[-1].end_kind) == (None, EPISODE_ENDED)
    assert episode.take_events() == [CareTeamChanged(episode.id)]


def test_a_cancelled_readmission_hands_the_carried_peer_back_to_the_previous_episode() -> None:
    previous = discharged()
    previous.assign("peer-1", hours(50))
    readmitted = admitted("enc-2", previous)
    assert (previous.peer_id, readmitted.peer_id) == (None, "peer-1")
    answer = readmitted.withdraw(CANCELLED, previous, hours(80))
    assert answer == "admission cancelled; episode closed, peer back with the previous episode"
    assert (previous.peer_id, previous.state, readmitted.peer_id) == ("peer-1", IN_COMMUNITY, None)
    assert CareTeamChanged(previous.id) in previous.take_events()


def test_a_cancelled_admission_of_a_discharged_stay_changes_nothing() -> None:
    episode = discharged()
    assert episode.withdraw(CANCELLED, None, hours(60)) == "stay not on the ward; cancellation recorded without effect"
    assert (episode.closure, episode.state) == (None, IN_COMMUNITY)
