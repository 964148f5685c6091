"""Hospital events in: Da Vinci notifications over $process-message, subscription notifications (R4 backport,
R4B, R5) on one endpoint, and the channels' health for operators.

What needs the EHR (id-only fetches, searches, recovery) is queued as jobs; the worker (service/workers/) does
them, woken at once when it runs in this process.
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from service.api.deps import (
    Coordinator,
    EhrSender,
    NotificationSender,
    SessionsDep,
    SettingsDep,
    read_body,
    wake_worker,
)
from service.api.responses import FhirResponse
from service.app import notifications
from service.app.intake import ChannelPolicy, process_notification
from service.app.subscriptions import receive_subscription_notification
from service.fhir.parse import check_entry_count, load_json
from service.fhir.subscription import parse_subscription_notification

router = APIRouter(tags=["intake"])

NOTIFICATION_ENDPOINT = "/fhir/subscription-notification"


@router.post(
    "/fhir/$process-message",
    response_class=FhirResponse,
    summary="Receive a Da Vinci notification message Bundle (admit, transfer, discharge)",
)
async def process_message(
    request: Request, caller: EhrSender, sessions: SessionsDep, settings: SettingsDep
) -> FhirResponse:
    # The site is checked by process_notification, in the message's own transaction.
    body = await read_body(request, settings)
    data = load_json(body, "Bundle")
    check_entry_count(data, settings.max_bundle_entries)
    answer = await process_notification(sessions, caller.site, data, settings.expected_discharge_extension, body=body)
    wake_worker(request)  # the CareTeam and Practitioner writes a discharge or readmission queued
    return FhirResponse(answer.body, status_code=answer.status)


@router.post(
    NOTIFICATION_ENDPOINT,
    response_class=FhirResponse,
    summary="Receive a subscription notification (R4 backport, R4B or R5; handshake, heartbeat, events)",
)
async def subscription_notification(
    request: Request, caller: NotificationSender, sessions: SessionsDep, settings: SettingsDep
) -> FhirResponse:
    data = load_json(await read_body(request, settings), "Bundle")
    check_entry_count(data, settings.max_bundle_entries)
    note = parse_subscription_notification(data, settings.expected_discharge_extension)
    policy = ChannelPolicy(
        heartbeat_seconds=settings.subscription_heartbeat_seconds,
        gap_grace_seconds=settings.subscription_gap_grace_seconds,
        search_margin_seconds=settings.subscription_search_margin_seconds,
    )
    answer = await receive_subscription_notification(sessions, caller.site, note, policy)
    wake_worker(request)  # queued work (id-only, empty, a gap)
    return FhirResponse(answer.body, status_code=answer.status)


# The channel health view is a frozen dataclass; FastAPI serialises it as it is.


@router.get(
    "/api/channels",
    summary="Subscription channels and their health: ok, waiting, gap (missed events), silent (no heartbeat), error",
)
async def channel_health(
    caller: Coordinator, sessions: SessionsDep, settings: SettingsDep
) -> list[notifications.ChannelHealth]:
    """The caller's own site's channels only."""
    return list(await notifications.channel_health(sessions, settings, caller.site))
