"""FHIR search parameter values we accept: `date` with the ge/gt/le/lt/eq prefixes."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from service.errors import BadRequest

_DATE = re.compile(r"^(?P<prefix>eq|ge|gt|le|lt)?(?P<value>\d{4}(-\d{2}(-\d{2}(T.+)?)?)?)$")


def _range(value: str) -> tuple[datetime, datetime]:
    """The instant range [low, high) a FHIR date/dateTime of any precision covers."""
    if "T" in value:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        if moment.tzinfo is None:
            raise ValueError("a time needs a zone")
        return moment, moment + timedelta(seconds=1)
    parts = [int(p) for p in value.split("-")]
    low = datetime(parts[0], parts[1] if len(parts) > 1 else 1, parts[2] if len(parts) > 2 else 1, tzinfo=UTC)
    if len(parts) == 3:
        return low, low + timedelta(days=1)
    if len(parts) == 2:
        return low, datetime(low.year + (low.month == 12), low.month % 12 + 1, 1, tzinfo=UTC)
    return low, datetime(low.year + 1, 1, 1, tzinfo=UTC)


def date_bounds(values: Sequence[str], parameter: str = "date") -> tuple[datetime | None, datetime | None]:
    """`date=ge2026-01-01&date=lt2026-02` -> (since, until), until exclusive; several values intersect."""
    since: datetime | None = None
    until: datetime | None = None
    for raw in values:
        match = _DATE.match(raw)
        try:
            if match is None:
                raise ValueError(raw)
            low, high = _range(match["value"])
        except ValueError:
            raise BadRequest(
                f"{parameter}={raw!r}: use a FHIR date or dateTime (with zone), prefixed ge, gt, le, lt or eq",
                parameter,
            ) from None
        prefix = match["prefix"] or "eq"
        lower = {"ge": low, "gt": high, "eq": low}.get(prefix)
        upper = {"le": high, "lt": low, "eq": high}.get(prefix)
        if lower is not None:
            since = lower if since is None else max(since, lower)
        if upper is not None:
            until = upper if until is None else min(until, upper)
    return since, until
