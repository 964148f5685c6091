"""Hypothesis profiles for the consent suite: how many generated cases each property runs.

PEERWAY_HYPOTHESIS selects one: `quick` for `make check` and the second backend's run, `ci` (the default,
over 100,000 cases in all), `deep` (ten times that, `make test-deep`) and `mutation` (few cases, derandomized,
so that `make mutation` gives the same answer twice).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

from hypothesis import HealthCheck, settings

F = TypeVar("F", bound=Callable[..., Any])

# Examples per unit of weight; the properties' weights add up to 18 and each example checks a batch of 24
# generated requests against its generated consents: `ci` checks 18 * 240 * 24 = 103,680 cases.
_BASES = {"quick": 20, "ci": 240, "deep": 2400, "mutation": 30}
PROFILE = os.environ.get("PEERWAY_HYPOTHESIS", "ci")
if PROFILE not in _BASES:
    raise RuntimeError(f"PEERWAY_HYPOTHESIS must be one of {', '.join(_BASES)}, not {PROFILE!r}")
BASE = _BASES[PROFILE]


def weighted(weight: int) -> Callable[[F], F]:
    """Hypothesis settings giving a property `weight` times the profile's number of cases."""
    return settings(
        max_examples=BASE * weight,
        deadline=None,
        database=None,
        derandomize=PROFILE == "mutation",
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
