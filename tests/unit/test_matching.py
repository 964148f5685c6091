"""Matching is on what people have in common: transparent scores, hard rules, reasons in words."""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.domain.matching import (
    Candidate,
    ClientPreferences,
    PeerProfile,
    exclusion,
    rank,
    score,
)
from service.domain.vocabulary import PeerStatus, SupportKind

CLIENT = ClientPreferences(
    client_id="client-1",
    peer_genders=frozenset({"female"}),
    languages=frozenset({"pt", "en"}),
    interests=("Tennis", "old movies", "gardening"),
    own_age_band="25-34",
    own_gender="female",
    peer_age_bands=frozenset({"25-34", "35-44"}),
    neighbourhood="Riverside",
)


def peer(peer_id: str = "p1", **changes: Any) -> PeerProfile:
    base = PeerProfile(
        peer_id=peer_id,
        name=f"Peer {peer_id}",
        gender="female",
        age_band="25-34",
        languages=frozenset({"pt"}),
        interests=("tennis", "Old Movies"),
        neighbourhood="riverside",
        caseload_cap=5,
        support_kinds=frozenset({SupportKind.COMMUNITY_VISITS}),
    )
    return replace(base, **changes)


def test_reasons_name_what_the_pair_has_in_common() -> None:
    suggestion = score(CLIENT, Candidate(peer(), caseload=3), on_ward=False)
    assert suggestion.reasons == (
        "both enjoy tennis and old movies",
        "speaks Portuguese",
        "the gender the client prefers",
        "in the age range the client prefers",
        "both in riverside",
        "offers community visits",
        "2 of 5 places free",
    )
    # 2 interests x 3 + language 4 + gender 3 + age 2 + neighbourhood 3 + stage 1 + capacity 2 x 2/5
    assert suggestion.score == pytest.approx(6 + 4 + 3 + 2 + 3 + 1 + 0.8)


@pytest.mark.parametrize(
    ("changes", "caseload", "why"),
    [
        ({"status": PeerStatus.PAUSED}, 0, "paused"),
        ({"status": PeerStatus.INACTIVE}, 0, "inactive"),
        ({"caseload_cap": 2}, 2, "at their caseload cap (2 of 2)"),
        ({"peer_id": "excluded-by-client"}, 0, "the client asked not to be matched with this peer"),
        ({"peer_id": "tried"}, 0, "already re-matched away from this client"),
    ],
)
def test_hard_rules_exclude_before_any_score(changes: dict[str, Any], caseload: int, why: str) -> None:
    prefs = ClientPreferences(client_id="c", excluded_peers=frozenset({"excluded-by-client"}))
    assert exclusion(prefs, Candidate(peer(**changes), caseload), frozenset({"tried"})) == why
    ranking = rank(prefs, [Candidate(peer(**changes), caseload)], on_ward=False, tried=frozenset({"tried"}))
    assert ranking.suggestions == ()
    assert [e.reason for e in ranking.excluded] == [why]


@pytest.mark.parametrize(
    ("changes", "reason", "delta"),
    [
        ({"languages": frozenset({"fr"})}, "no language in common", -4.0),
        ({"gender": "male"}, "not the gender the client prefers", -3.0),
        ({"age_band": "65-plus"}, "outside the age range the client prefers", -2.0),
        ({"client_min_age": 40}, "the client is outside the peer's own preferences", 0.0),
        (
            {"client_max_age": 40, "client_genders": frozenset({"female"})},
            "the client fits the peer's own preferences",
            2.0,
        ),
        ({"support_kinds": frozenset({SupportKind.ON_WARD_GROUPS})}, None, -1.0),
    ],
)
def test_each_preference_moves_the_score_with_a_reason(
    changes: dict[str, Any], reason: str | None, delta: float
) -> None:
    base = score(CLIENT, Candidate(peer(), 3), on_ward=False)
    changed = score(CLIENT, Candidate(peer(**changes), 3), on_ward=False)
    assert changed.score == pytest.approx(base.score + delta)
    if reason is not None:
        assert reason in changed.reasons


def test_on_the_ward_peers_who_meet_on_the_ward_rank_higher() -> None:
    ward = peer("ward", support_kinds=frozenset({SupportKind.ON_WARD_ONE_TO_ONE}))
    community = peer("community")
    ranking = rank(CLIENT, [Candidate(community, 0), Candidate(ward, 0)], on_ward=True)
    assert [s.peer_id for s in ranking.suggestions] == ["ward", "community"]
    assert "offers on-ward meetings" in ranking.suggestions[0].reasons


def test_free_capacity_counts_and_ties_break_on_fewer_clients_then_id() -> None:
    candidates = [Candidate(peer("b"), 1), Candidate(peer("a"), 1), Candidate(peer("c", caseload_cap=10), 6)]
    # b and a: 2 x 4/5 = 1.6; c: 2 x 4/10 = 0.8
    assert [s.peer_id for s in rank(CLIENT, candidates, on_ward=False).suggestions] == ["a", "b", "c"]


def test_nothing_shared_for_matching_still_ranks_by_capacity_alone() -> None:
    empty = ClientPreferences(client_id="c")
    ranking = rank(
        empty, [Candidate(peer("full", caseload_cap=4), 3), Candidate(peer("free", caseload_cap=4), 0)], on_ward=False
    )
    assert [s.peer_id for s in ranking.suggestions] == ["free", "full"]
    assert ranking.suggestions[0].reasons[-1] == "4 of 4 places free"


PEERS = [
    peer(
        f"p{i:03}",
        interests=tuple(random.Random(i).sample(["tennis", "old movies", "chess", "hiking", "music"], 2)),
        languages=frozenset(random.Random(i + 1).sample(["pt", "en", "fr"], 1)),
        gender=random.Random(i + 2).choice(["female", "male"]),
        caseload_cap=random.Random(i + 3).randint(1, 5),
    )
    for i in range(40)
]


@given(order=st.permutations(range(40)), loads=st.lists(st.integers(0, 5), min_size=40, max_size=40))
def test_the_ranking_never_depends_on_input_order(order: list[int], loads: list[int]) -> None:
    candidates = [Candidate(PEERS[i], loads[i]) for i in range(40)]
    shuffled = [candidates[i] for i in order]
    assert rank(CLIENT, shuffled, on_ward=False, limit=40) == rank(CLIENT, candidates, on_ward=False, limit=40)
