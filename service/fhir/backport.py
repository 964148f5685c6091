"""Peerway's own Subscription on an EHR, in R4 backport form, and what the EHR says about it ($status, or a
read). (Notifications themselves: subscription.py.)"""

from __future__ import annotations

from typing import Any

from service.errors import InvalidResource
from service.fhir.notification import SubscriptionReport
from service.fhir.subscription import (
    BACKPORT_SUBSCRIPTION,
    FILTER_CRITERIA,
    HEARTBEAT_PERIOD,
    PAYLOAD_CONTENT,
    TIMEOUT,
    parse_subscription_notification,
)


def backport_subscription(
    *,
    subscription_id: str,
    topic: str,
    endpoint: str,
    header: str,
    payload: str,
    heartbeat_seconds: int,
    timeout_seconds: int,
    filter_criteria: str | None,
) -> dict[str, Any]:
    """Peerway's Subscription in R4 backport form (rest-hook, application/fhir+json, secret header)."""
    channel: dict[str, Any] = {
        "extension": [{"url": TIMEOUT, "valueUnsignedInt": timeout_seconds}],
        "type": "rest-hook",
        "endpoint": endpoint,
        "payload": "application/fhir+json",
        "_payload": {"extension": [{"url": PAYLOAD_CONTENT, "valueCode": payload}]},
        "header": [header],
    }
    if heartbeat_seconds > 0:
        channel["extension"].insert(0, {"url": HEARTBEAT_PERIOD, "valueUnsignedInt": heartbeat_seconds})
    subscription: dict[str, Any] = {
        "resourceType": "Subscription",
        "id": subscription_id,
        "meta": {"profile": [BACKPORT_SUBSCRIPTION]},
        "status": "requested",
        "reason": "Peerway: hospital stays of clients in a Transitional Discharge Model peer-support program",
        "criteria": topic,
        "channel": channel,
    }
    if filter_criteria:
        subscription["_criteria"] = {"extension": [{"url": FILTER_CRITERIA, "valueString": filter_criteria}]}
    return subscription


STATUS_TYPES = ("Parameters", "SubscriptionStatus")  # a subscription's status: R4 backport; R4B and R5


def _status_bundle(data: dict[str, Any]) -> dict[str, Any]:
    """$status answers a searchset Bundle of status resources (the backport IG's Operations.fsh; R5 alike): its
    first status entry as the one-entry notification Bundle it reads like (a query-status notification; R4B's
    SubscriptionStatus and R5's have the same elements). Some servers answer a history Bundle, the notification
    form itself: taken as it is."""
    if data.get("type") != "searchset":
        return data
    entries = data.get("entry")
    found = next(
        (
            entry["resource"]
            for entry in (entries if isinstance(entries, list) else [])
            if isinstance(entry, dict)
            and isinstance(entry.get("resource"), dict)
            and entry["resource"].get("resourceType") in STATUS_TYPES
        ),
        None,
    )
    if found is None:
        raise InvalidResource("the $status answer holds no subscription status", "Bundle.entry")
    return {"resourceType": "Bundle", "type": "history", "entry": [{"resource": found}]}


def subscription_report(data: dict[str, Any], source: str) -> SubscriptionReport:
    """The answer to $status (a searchset of status resources) or to a read of the Subscription ->
    SubscriptionReport."""
    if data.get("resourceType") == "Bundle":
        note = parse_subscription_notification(_status_bundle(data))
        return SubscriptionReport(
            subscription=note.subscription,
            status=note.status,
            events_since_start=note.events_since_start,
            heartbeat_seconds=None,
            topic=note.topic,
            error=None,
            source=source,
        )
    if data.get("resourceType") != "Subscription":
        raise InvalidResource("expected a Subscription or a status Bundle", "resourceType")
    found = data.get("channel")
    channel: dict[str, Any] = found if isinstance(found, dict) else {}
    heartbeat = next(
        (
            e.get("valueUnsignedInt")
            for e in channel.get("extension") or []
            if isinstance(e, dict) and e.get("url") == HEARTBEAT_PERIOD
        ),
        None,
    )
    return SubscriptionReport(
        subscription=f"Subscription/{data.get('id')}",
        status=str(data["status"]) if data.get("status") else None,
        events_since_start=None,
        heartbeat_seconds=int(heartbeat) if isinstance(heartbeat, int) else None,
        topic=str(data["criteria"]) if data.get("criteria") else None,
        error=str(data["error"]) if data.get("error") else None,
        source=source,
    )
