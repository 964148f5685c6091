"""Subscription notifications as Peerway reads them, whichever dialect they came in (R4 backport, R4B, R5):
what service/fhir/subscription.py parses a notification Bundle into, and what an EHR says of a Subscription.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from service.domain.stay import Stay


class NotificationType(StrEnum):
    """What a subscription notification is (R5 / backport SubscriptionStatus.type)."""

    HANDSHAKE = "handshake"
    HEARTBEAT = "heartbeat"
    EVENT_NOTIFICATION = "event-notification"
    QUERY_STATUS = "query-status"
    QUERY_EVENT = "query-event"


class NotificationForm(StrEnum):
    """The dialect a notification arrived in."""

    R4_BACKPORT = "r4-backport"  # Bundle.type history, first entry a Parameters (backport-subscription-status-r4)
    R4B = "r4b"  # Bundle.type history, first entry an R4B SubscriptionStatus
    R5 = "r5"  # Bundle.type subscription-notification, first entry an R5 SubscriptionStatus


@dataclass(frozen=True)
class NotifiedEvent:
    """One event of a subscription notification: its number, and what the payload carried about it.

    full-resource: `stay` is set. id-only: `focus` ("Encounter/<id>") is set and the stay is fetched later.
    empty: neither; what changed is searched for.
    """

    number: int
    occurred_at: datetime | None
    focus: str | None
    stay: Stay | None
    other_focus: bool = False  # the focus is not an Encounter: acknowledged without effect
    where: str = ""  # the FHIRPath of the event in its notification, for an answer naming it


@dataclass(frozen=True)
class SubscriptionNotification:
    """A subscription notification Bundle in any of the three forms, reduced to what intake needs."""

    form: NotificationForm
    subscription: str  # "Subscription/<id>" on the sender's server
    topic: str | None
    status: str | None
    type: NotificationType
    events_since_start: int | None
    events: tuple[NotifiedEvent, ...]
    sent_at: datetime | None


@dataclass(frozen=True)
class SubscriptionReport:
    """The EHR's view of a Subscription ($status, or a read when $status is not offered)."""

    subscription: str
    status: str | None
    events_since_start: int | None
    heartbeat_seconds: int | None
    topic: str | None
    error: str | None
    source: str  # "$status" or "read"
