"""When to try a failed job again, and when to stop: a dead letter keeps the EHR's answer for a person.

One policy for every kind of job, writes to the EHR and reads from it alike. Transient: the EHR could not be
reached (or timed out), or answered 408, 409, 425, 429 or 5xx (except 501 and 505); so is a fault of ours (the
database, a bug). Those are retried with exponential backoff and jitter, capped, honouring Retry-After, for
outbox_retry_hours after the first failure (96 h by default: a long weekend's outage is survived). Anything
else is permanent and goes straight to dead letter — 400, 403, 404, 422, a 401 that a fresh token did not cure,
an EHR answer that cannot be read as the resource asked for, work that cannot be done whatever the EHR does:
retrying cannot help until someone fixes the cause and replays it. A kind of job may also stop after a number
of attempts (intake's PEERWAY_INTAKE_MAX_ATTEMPTS).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from service.errors import PeerwayError, UpstreamError
from service.fhir import build
from service.settings import Settings

TRANSIENT_4XX = frozenset({408, 409, 425, 429})  # 409: a concurrent change at the EHR; trying again resolves it
PERMANENT_5XX = frozenset({501, 505})
MAX_RETRY_AFTER_SECONDS = 6 * 3600.0  # an EHR asking for more than this is asking for a dead letter


class Permanent(Exception):
    """The job cannot be done whatever the EHR does (its subject is gone, an EHR we cannot write to)."""


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
class Limits:
    """What a kind of job may differ in: the backoff cap, and an optional cap on attempts."""

    max_backoff_seconds: float
    max_attempts: int | None = None


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
    limits: Limits | None = None,
) -> Verdict:
    """What to do after the attempt number `attempts` (1-based) failed now."""
    limits = limits or Limits(settings.outbox_max_backoff_seconds)
    if not is_transient(http_status):
        return Verdict(dead=True, next_attempt_at=now)
    if limits.max_attempts is not None and attempts >= limits.max_attempts:
        return Verdict(dead=True, next_attempt_at=now)
    horizon = (first_failed_at or now) + timedelta(hours=settings.outbox_retry_hours)
    if retry_after is not None:
        wait = min(retry_after, MAX_RETRY_AFTER_SECONDS)
    else:
        wait = backoff_seconds(attempts, limits.max_backoff_seconds)
    next_attempt_at = now + timedelta(seconds=wait)
    if now >= horizon:
        return Verdict(dead=True, next_attempt_at=now)
    return Verdict(dead=False, next_attempt_at=min(next_attempt_at, horizon))


@dataclass(frozen=True)
class Failed:
    """A failed attempt as the row keeps it (`error`: may quote the EHR) and as the log says it (`summary`:
    ids and statuses only)."""

    http_status: int | None
    retry_after: float | None
    error: str
    outcome_json: str | None
    summary: str
    permanent: bool = False
    unexpected: bool = False


def failure_of(exc: Exception) -> Failed:
    """What an exception out of a job's handler means for the job."""
    if isinstance(exc, UpstreamError):  # the EHR failed or refused: its status decides
        outcome = build.to_json(exc.outcome) if exc.outcome else None
        error = exc.diagnostics + (f"\n{outcome}" if outcome else "")
        return Failed(exc.http_status, exc.retry_after, error, outcome, exc.diagnostics.split("\n", 1)[0])
    if isinstance(exc, Permanent):
        return Failed(None, None, str(exc), None, str(exc), permanent=True)
    if isinstance(exc, PeerwayError):  # what the EHR answered is not a resource we can read
        error = f"unreadable answer from the EHR at {exc.expression}: {exc.diagnostics}"
        return Failed(None, None, error, None, f"unreadable answer from the EHR at {exc.expression}", permanent=True)
    name = type(exc).__name__  # a fault of ours or of the database: retried, within the horizon, like an outage
    return Failed(None, None, f"internal error: {name}", None, f"unexpected {name}", unexpected=True)
