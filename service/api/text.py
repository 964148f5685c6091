"""Text holding U+0000 (NUL) is refused before a route reads it: PostgreSQL can neither store nor compare such
text (every query with it failed as a 500), and no FHIR string may hold a control character. The refusal is a
400 (URL) or 422 (body) naming the parameter or element; SQLite would have taken it, so both backends now agree.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from pydantic import BaseModel, field_validator

from service.errors import BadRequest

NUL = "\x00"


def holds_nul(value: Any) -> bool:
    """Whether a JSON value has U+0000 in any string, key or value, at any depth."""
    if isinstance(value, str):
        return NUL in value
    if isinstance(value, dict):
        return any(holds_nul(k) or holds_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(holds_nul(v) for v in value)
    return False


async def url_without_nul(request: Request) -> None:
    """An app-wide dependency: no path or query parameter may hold U+0000."""
    for name, value in request.path_params.items():
        if holds_nul(value):
            raise BadRequest(f"path.{name}: text may not contain U+0000", f"path.{name}")
    if not request.scope.get("query_string"):
        return  # no query: nothing to parse (most requests)
    for name, value in request.query_params.multi_items():
        if holds_nul(name) or holds_nul(value):
            raise BadRequest(f"query.{name}: text may not contain U+0000", f"query.{name}")


class Input(BaseModel):
    """The base of the API's JSON bodies: a field holding U+0000 anywhere is a 422 naming that field."""

    @field_validator("*", mode="before")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        if holds_nul(value):
            raise ValueError("text may not contain U+0000")
        return value
