"""Where the next page of a keyset-paged list starts, as its link carries it: the key's time (UTC, ISO 8601), "|"
and the id. The desk's ended episodes and `GET /api/episodes` page this way; each names its own parameter when a
link does not parse (a key that is not one is the caller's error, never a query)."""

from __future__ import annotations

import re
from datetime import UTC, datetime

Key = tuple[datetime, str]

_ID = re.compile(r"[A-Za-z0-9.-]{1,64}")


def key_text(key: Key) -> str:
    return f"{key[0].astimezone(UTC).isoformat()}|{key[1]}"


def key_of(text: str) -> Key | None:
    """key_text's inverse; None for text it did not make (no time zone, a time out of range in UTC, not an id)."""
    moment, _, ident = text.rpartition("|")
    try:
        at = datetime.fromisoformat(moment)
        if at.tzinfo is None:
            return None
        at = at.astimezone(UTC)
    except (ValueError, OverflowError):
        return None
    return (at, ident) if _ID.fullmatch(ident) else None
