"""Retries that do not give up early: what the EHR refuses for good is a dead letter at once; an outage is
retried, never more than the backoff cap apart, for at least 72 hours (96 by default), honouring Retry-After."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from service.settings import Settings
from service.workers.retry import decide, is_transient

T0 = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
SETTINGS = Settings(_env_file=None)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 405, 410, 412, 415, 422, 501])
def test_what_the_ehr_refuses_for_good_is_a_dead_letter_at_once(status: int) -> None:
    assert not is_transient(status)
    assert decide(status, None, 1, None, T0, SETTINGS).dead


@pytest.mark.parametrize("status", [None, 408, 409, 425, 429, 500, 502, 503, 504])
def test_outages_and_overload_are_retried(status: int | None) -> None:
    assert is_transient(status)
    verdict = decide(status, None, 1, None, T0, SETTINGS)
    assert not verdict.dead
    assert T0 < verdict.next_attempt_at <= T0 + timedelta(seconds=2)


def test_retry_after_is_honoured_even_beyond_the_backoff_cap() -> None:
    assert decide(503, 7.0, 1, None, T0, SETTINGS).next_attempt_at == T0 + timedelta(seconds=7)
    assert decide(429, 900.0, 1, None, T0, SETTINGS).next_attempt_at == T0 + timedelta(seconds=900)


def test_an_outage_is_retried_for_96_hours_never_more_than_5_minutes_apart() -> None:
    now, attempts, gaps = T0, 0, []
    first_failed: datetime | None = None
    while True:
        attempts += 1
        verdict = decide(None, None, attempts, first_failed, now, SETTINGS)
        first_failed = first_failed or now
        if verdict.dead:
            break
        gaps.append((verdict.next_attempt_at - now).total_seconds())
        now = verdict.next_attempt_at
    assert now - T0 >= timedelta(hours=96)
    assert now - T0 < timedelta(hours=96, minutes=6)
    assert max(gaps) <= SETTINGS.outbox_max_backoff_seconds
    assert gaps[:3] == sorted(gaps[:3])  # it starts fast and backs off
    assert attempts > 96 * 12  # about every 2.5 to 5 minutes once backed off


def test_the_horizon_is_a_setting() -> None:
    short = SETTINGS.model_copy(update={"outbox_retry_hours": 72.0})
    assert not decide(503, None, 50, T0, T0 + timedelta(hours=71, minutes=59), short).dead
    assert decide(503, None, 51, T0, T0 + timedelta(hours=72), short).dead
