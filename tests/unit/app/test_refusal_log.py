"""service/app/refusals.RefusalLog: a probing peer's refusals are logged one by one up to the window's budget,
then counted; the count is logged when the peer is next refused after the window; peers are counted apart."""

from __future__ import annotations

import logging

import pytest

from service.app.refusals import RefusalLog

PEER, OTHER = "peer-a", "peer-b"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "service.app.refusals"]


def test_a_probing_peer_is_logged_up_to_the_budget_then_counted(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    clock = Clock()
    refusals = RefusalLog(lines=3, window=60, clock=clock)
    for n in range(10):
        refusals.refused(PEER, f"Patient/{n}")
    logged = lines(caplog)
    assert [line for line in logged if "is not one of theirs" in line] == [
        f"refused peer {PEER}: Patient/{n} is not one of theirs, or does not exist" for n in range(3)
    ]
    assert len(logged) == 4
    assert "counted, not logged" in logged[3]

    refusals.refused(OTHER, "Patient/x")  # another peer has a budget of their own
    assert lines(caplog)[-1].endswith("Patient/x is not one of theirs, or does not exist")

    clock.now += 59.9
    refusals.refused(PEER, "Patient/late")  # still the same window: counted only
    assert len(lines(caplog)) == 5

    clock.now += 0.1
    refusals.refused(PEER, "Patient/next")
    assert lines(caplog)[-2] == f"refused peer {PEER} 8 more times, not logged one by one (probing?)"
    assert lines(caplog)[-1].endswith("Patient/next is not one of theirs, or does not exist")


def test_a_peer_within_the_budget_gets_no_summary(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    clock = Clock()
    refusals = RefusalLog(lines=3, window=60, clock=clock)
    refusals.refused(PEER, "Patient/1")
    refusals.refused(PEER, "Patient/2")
    clock.now += 61
    refusals.refused(PEER, "Patient/3")
    assert len(lines(caplog)) == 3
    assert all("is not one of theirs" in line for line in lines(caplog))


def test_only_so_many_peers_are_remembered() -> None:
    refusals = RefusalLog(lines=3, window=60, max_peers=2, clock=Clock())
    for peer in ("a", "b", "c", "b"):
        refusals.refused(peer, "Patient/1")
    assert list(refusals._peers) == ["c", "b"]


def test_a_prober_who_stops_is_counted_when_anyone_is_refused_after_the_window(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    clock = Clock()
    refusals = RefusalLog(lines=3, window=60, clock=clock)
    for n in range(8):
        refusals.refused(PEER, f"Patient/{n}")
    clock.now += 60
    refusals.refused(OTHER, "Patient/x")
    assert lines(caplog)[-2:] == [
        f"refused peer {PEER} 5 more times, not logged one by one (probing?)",
        f"refused peer {OTHER}: Patient/x is not one of theirs, or does not exist",
    ]


def test_a_prober_forgotten_to_make_room_is_counted(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    refusals = RefusalLog(lines=1, window=60, max_peers=1, clock=Clock())
    for _ in range(4):
        refusals.refused(PEER, "Patient/1")
    refusals.refused(OTHER, "Patient/2")
    assert f"refused peer {PEER} 3 more times, not logged one by one (probing?)" in lines(caplog)


def test_a_long_probe_is_told_at_each_power_of_ten(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    refusals = RefusalLog(lines=3, window=60, clock=Clock())
    for _ in range(1000):
        refusals.refused(PEER, "Patient/1")
    told = [line for line in lines(caplog) if "within this window" in line]
    assert told == [f"refused peer {PEER} {n} times within this window (probing?)" for n in (100, 1000)]
