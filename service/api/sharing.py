"""Coordinators: why a peer does or does not see each of a client's data categories."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel

from service.api.deps import Coordinator, SessionsDep
from service.app.explain import explain_sharing

router = APIRouter(prefix="/api", tags=["coordinator"])


class FetchOut(BaseModel):
    """The last read of a category from the hospital EHR (the worker's, never a request's)."""

    status: str  # ok | failed (the items of the last success are still shown, marked stale)
    attempted_at: datetime
    succeeded_at: datetime | None
    items: int
    error: str | None


class CategoryOut(BaseModel):
    category: str
    display: str
    shared: bool
    held: bool
    consent: str | None
    provision: str | None
    reason: str
    items: int = 0
    withheld_items: int = 0
    fetch: FetchOut | None = None


class ExplanationOut(BaseModel):
    client_id: str
    peer_id: str
    assigned: bool
    at: datetime
    categories: list[CategoryOut]


@router.get("/clients/{client_id}/sharing", summary="Why a peer does or does not see each data category")
async def explain(
    client_id: str,
    caller: Coordinator,
    sessions: SessionsDep,
    peer_id: Annotated[str | None, Query(description="default: the peer assigned to the client")] = None,
    at: Annotated[datetime | None, Query(description="evaluate at this time (ISO 8601 with zone); default now")] = None,
) -> ExplanationOut:
    found = await explain_sharing(sessions, caller.site, client_id, peer_id, at)
    return ExplanationOut(
        client_id=found.client_id,
        peer_id=found.peer_id,
        assigned=found.assigned,
        at=found.at,
        categories=[
            CategoryOut(**(vars(c) | {"fetch": FetchOut(**vars(c.fetch)) if c.fetch else None}))
            for c in found.categories
        ],
    )
