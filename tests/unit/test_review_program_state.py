"""The consent review decides from the state it remembers (service/app/background.py): which episode is the
client's current one must be found there as repository.current_episode finds it in the database (the newest whose
admission the hospital did not cancel), or a readmission cancelled on the ward would leave a client in the
community treated as on the ward (no first read when a consent starts) or as ended (what they hold deleted)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from service.app.background import _program_state
from service.domain.vocabulary import ADMISSION_CANCELLED
from service.store.background import ReviewState

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def state(episodes: list[tuple[str, str, int]], closures: list[tuple[str, str]]) -> ReviewState:
    """Episodes as (id, where, hours after T0 created); closures as (episode id, reason)."""
    return ReviewState(
        site="default",
        consents=(),
        episodes=tuple(sorted((i, where, T0 + timedelta(hours=h)) for i, where, h in episodes)),
        closures=tuple(sorted(closures)),
        fetched=(),
        items=(),
        queued=False,
    )


@pytest.mark.parametrize(
    ("episodes", "closures", "ended_in_community"),
    [
        ([], [], (False, False)),  # no episode: nothing to read for
        ([("a", "in-community", 0)], [], (False, True)),
        ([("a", "in-community", 0), ("b", "on-ward", 5)], [], (False, False)),  # readmitted: on the ward
        # The readmission cancelled: the earlier stay in the community is current again.
        ([("a", "in-community", 0), ("b", "on-ward", 5)], [("b", ADMISSION_CANCELLED)], (False, True)),
        ([("a", "in-community", 0)], [("a", "completed")], (True, False)),  # the program ended it
        ([("a", "in-community", 0), ("b", "on-ward", 5)], [("a", "completed")], (False, False)),
        ([("a", "in-community", 0)], [("a", ADMISSION_CANCELLED)], (False, False)),  # only a cancelled one
        # Ids sort against creation: the newer episode is current whatever its id.
        ([("z", "in-community", 0), ("a", "on-ward", 5)], [], (False, False)),
        # Two created at one instant: the larger id, as the database orders them too.
        ([("a", "in-community", 0), ("z", "on-ward", 0)], [("a", "completed")], (False, False)),
        ([("z", "in-community", 0), ("a", "on-ward", 0)], [("z", "completed")], (True, False)),
    ],
)
def test_the_current_episode_is_found_as_the_database_finds_it(
    episodes: list[tuple[str, str, int]], closures: list[tuple[str, str]], ended_in_community: tuple[bool, bool]
) -> None:
    assert _program_state(state(episodes, closures)) == ended_in_community
