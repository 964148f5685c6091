"""HL7 v2 feeds' health for the coordinator, beside the subscription channels: last message, errors, silence,
and the merges (A40) waiting for a person to look at them."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter

from service.api.deps import Coordinator, SessionsDep, SettingsDep
from service.app import feeds

router = APIRouter(tags=["intake"])


@router.get(
    "/api/feeds",
    summary="HL7 v2 ADT feeds and their health: waiting, ok, error (last message refused), silent; merges to review",
)
async def feed_health(caller: Coordinator, sessions: SessionsDep, settings: SettingsDep) -> list[feeds.FeedView]:
    """The caller's own site's feeds only."""
    silence = timedelta(seconds=settings.hl7_feed_silence_seconds)
    return await feeds.list_feeds(sessions, caller.site, silence)
