"""When to try a failed delivery again, and when to stop: a dead letter keeps the EHR's answer for a person.

Transient: the EHR could not be reached (or timed out), or answered 408, 409, 425, 429 or 5xx (except 501 and
505). Those are retried with exponential backoff and jitter, capped, honouring Retry-After, for
outbox_retry_hours after the first failure (96 h by default: a long weekend's outage is survived). Anything
else is permanent — 400, 403, 404, 422, a 401 that a fresh token did not cure — and goes straight to dead
letter: retrying cannot help until someone fixes the cause and replays it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from service.settings import Settings

TRANSIENT_4XX = frozenset({408, 409, 425, 429})  # 409: a concurrent change at the EHR; trying again resolves it
PERMANENT_5XX = frozenset({501, 505})
MAX_RETRY_AFTER_SECONDS = 6 * 3600.0  # an EHR asking for more than this is asking for a dead letter


def is_transient(http_status: int | None) -> bool:
    if http_status is None:  # unreachable, timed out, no token to be had
        return True
    if http_status >= 500:
        return http_status not in PERMANENT_5XX
    return http_status in TRANSIENT_4XX


def backoff_seconds(attempts: int, cap: float) -> float:
    """Exponential backoff with jitter: about 2, 4, 8 ... seconds after each failure, never more than cap."""
    return random.uniform(0.5, 1.0) * min(cap, 2.0 ** min(attempts, 30))  # noqa: S311 - jitter, not crypto


@dataclass(frozen=True)
class Verdict:
    dead: bool
    next_attempt_at: datetime


def decide(
    http_status: int | None,
    retry_after: float | None,
    attempts: int,
    first_failed_at: datetime | None,
    now: datetime,
    settings: Settings,
) -> Verdict:
    """What to do after the attempt number `attempts` (1-based) failed now."""
    if not is_transient(http_status):
        return Verdict(dead=True, next_attempt_at=now)
    horizon = (first_failed_at or now) + timedelta(hours=settings.outbox_retry_hours)
    if retry_after is not None:
        wait = min(retry_after, MAX_RETRY_AFTER_SECONDS)
    else:
        wait = backoff_seconds(attempts, settings.outbox_max_backoff_seconds)
    next_attempt_at = now + timedelta(seconds=wait)
    if now >= horizon:
        return Verdict(dead=True, next_attempt_at=now)
    return Verdict(dead=False, next_attempt_at=min(next_attempt_at, horizon))
