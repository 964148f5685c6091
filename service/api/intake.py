"""Hospital events in: Da Vinci notifications over $process-message, subscription notifications (R4 backport,
R4B, R5) on one endpoint, and the channels' health for operators.

What needs the EHR (id-only fetches, searches, recovery) is queued as jobs; the worker (service/workers/) does
them, woken at once when it runs in this process.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response

from service.api.bodies import read_json
from service.api.deps import (
    BEARER,
    Coordinator,
    EhrSender,
    NotificationSender,
    SessionsDep,
    SettingsDep,
    caller_in_role,
    ehr_sender,
    gatekeeper,
    get_sessions,
    get_settings,
    principal,
    read_body,
    require,
    wake_worker,
)
from service.api.fhir_rest import json_only, json_unless_declared_otherwise
from service.api.hot import hand_solved_route
from service.api.paths import fhir_ids_in_path
from service.api.responses import FhirResponse
from service.api.text import url_without_nul
from service.app import notifications
from service.app.intake import ChannelPolicy, process_notification
from service.app.subscriptions import receive_subscription_notification
from service.auth import Role
from service.fhir.parse import check_entry_count, load_json
from service.fhir.subscription import parse_subscription_notification

router = APIRouter(tags=["intake"])

NOTIFICATION_ENDPOINT = "/fhir/subscription-notification"


async def _process_message_by_hand(request: Request) -> Response:
    """process_message's dependencies, solved in FastAPI's order (service/api/hot.py)."""
    await url_without_nul(request)
    await fhir_ids_in_path(request)
    await json_only(request)
    caller = await ehr_sender(await caller_in_role(request, Role.EHR_SYSTEM))
    return await process_message(request, caller, await get_sessions(request), await get_settings(request))


@hand_solved_route(
    router,
    "/fhir/$process-message",
    _process_message_by_hand,
    solves=[
        url_without_nul,
        fhir_ids_in_path,
        json_only,
        ehr_sender,
        require,
        principal,
        gatekeeper,
        BEARER,
        get_sessions,
        get_settings,
    ],
    methods=["POST"],
    dependencies=[Depends(json_only)],  # the response is JSON: XML asked for is a 406, as on every FHIR route
    response_class=FhirResponse,
    summary="Receive a Da Vinci notification message Bundle (admit, transfer, discharge)",
)
async def process_message(
    request: Request, caller: EhrSender, sessions: SessionsDep, settings: SettingsDep
) -> FhirResponse:
    # The site is checked by process_notification, in the message's own transaction.
    json_unless_declared_otherwise(request, "message Bundle")
    body = await read_body(request, settings)
    data = load_json(body, "Bundle", read_json(request.scope))  # the JSON the shape check read from these bytes
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
    json_unless_declared_otherwise(request, "notification Bundle")
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
