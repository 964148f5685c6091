"""Notifications (readmissions) and upcoming discharges, for the peer's app and for coordinators.

Feeds are polled: GET ...?_since=<next_since of the previous answer>. An item may come twice (same id) when it
is newer than a few seconds; none is ever skipped.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import AwareDatetime, BaseModel, Field

from service.api.deps import Coordinator, Peer, SessionsDep, SettingsDep
from service.app import notifications

router = APIRouter(tags=["notifications"])

Since = Annotated[
    AwareDatetime | None,
    Query(alias="_since", description="Only what was recorded after this instant (with a time zone)"),
]


class NotificationOut(BaseModel):
    id: int
    event: str = Field(description="readmitted")
    client_id: str
    patient: str = Field(description="Patient/<client_id>")
    episode_id: str
    recorded_at: datetime = Field(description="When Peerway recorded it (not a time from the hospital stay)")


class FeedOut(BaseModel):
    notifications: list[NotificationOut]
    next_since: datetime = Field(description="Pass as _since next time")


class UpcomingDischargeOut(BaseModel):
    episode_id: str
    client_id: str
    patient: str
    peer_id: str | None
    expected_discharge_at: datetime
    readmission: bool


def _feed(feed: notifications.Feed) -> FeedOut:
    return FeedOut(
        notifications=[
            NotificationOut(
                id=n.id,
                event=n.event,
                client_id=n.client_id,
                patient=f"Patient/{n.client_id}",
                episode_id=n.episode_id,
                recorded_at=n.created_at,
            )
            for n in feed.notifications
        ],
        next_since=feed.next_since,
    )


def _upcoming(items: list[notifications.UpcomingDischarge], *, with_peer: bool) -> list[UpcomingDischargeOut]:
    return [
        UpcomingDischargeOut(
            episode_id=u.episode_id,
            client_id=u.client_id,
            patient=f"Patient/{u.client_id}",
            peer_id=u.peer_id if with_peer else None,
            expected_discharge_at=u.expected_discharge_at,
            readmission=u.readmission,
        )
        for u in items
    ]


@router.get(
    "/api/me/notifications",
    summary="The calling peer's notifications: your client <id> was readmitted (as their consent allows)",
)
async def my_notifications(caller: Peer, sessions: SessionsDep, settings: SettingsDep, since: Since = None) -> FeedOut:
    overlap = settings.notification_feed_overlap_seconds
    return _feed(await notifications.peer_feed(sessions, caller.subject, since, overlap))


@router.get("/api/notifications", summary="Coordinators' notifications: which client was readmitted")
async def coordinator_notifications(
    caller: Coordinator, sessions: SessionsDep, settings: SettingsDep, since: Since = None
) -> FeedOut:
    overlap = settings.notification_feed_overlap_seconds
    return _feed(await notifications.coordinator_feed(sessions, caller.site, since, overlap))


@router.get("/api/discharges/upcoming", summary="Clients on the ward with an expected discharge date, soonest first")
async def upcoming_discharges(caller: Coordinator, sessions: SessionsDep) -> list[UpcomingDischargeOut]:
    return _upcoming(await notifications.upcoming_discharges(sessions, caller.site), with_peer=True)


@router.get(
    "/api/me/discharges/upcoming",
    summary="The calling peer's clients on the ward with an expected discharge date (as their consent allows)",
)
async def my_upcoming_discharges(caller: Peer, sessions: SessionsDep) -> list[UpcomingDischargeOut]:
    return _upcoming(await notifications.my_upcoming_discharges(sessions, caller.subject), with_peer=False)
