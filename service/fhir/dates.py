"""FHIR date and dateTime values as timezone-aware datetimes, read strictly (a bad value names its element)."""

from __future__ import annotations

import calendar
import re
from datetime import UTC, datetime, timedelta

from service.errors import InvalidResource

__all__ = ["optional_instant"]

_DATE = re.compile(r"(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?")
_DATETIME = re.compile(r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(\.\d+)?(Z|[+-]\d{2}:\d{2})")


def optional_instant(value: object, path: str, *, end: bool = False) -> datetime | None:
    """A FHIR date or dateTime as an aware datetime. Partial dates are read in UTC: as their first
    instant, or their last when `end` (FHIR period ends are inclusive)."""
    if value is None:
        return None
    if isinstance(value, str):
        if match := _DATETIME.fullmatch(value):
            fraction = (match.group(2) or "")[:7]  # Python keeps microseconds
            try:
                return datetime.fromisoformat(match.group(1) + fraction + match.group(3).replace("Z", "+00:00"))
            except ValueError:
                pass
        elif match := _DATE.fullmatch(value):
            try:
                return _partial_date(match, end=end)
            except ValueError:
                pass
    raise InvalidResource(f"not a FHIR date or dateTime: {value!r}", expression=path)


def _partial_date(match: re.Match[str], *, end: bool) -> datetime:
    year = int(match.group(1))
    month = int(match.group(2) or (12 if end else 1))
    last_day = calendar.monthrange(year, month)[1] if 1 <= month <= 12 else 0
    day = int(match.group(3) or (last_day if end else 1))
    first = datetime(year, month, day, tzinfo=UTC)
    return first + timedelta(days=1, microseconds=-1) if end else first
