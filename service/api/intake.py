"""Hospital events in: Da Vinci notifications over $process-message, subscription notifications (R4 backport,
R4B, R5) on one endpoint, and the channels' health for operators.

The router's lifespan runs the intake worker (id-only fetches, searches, recovery, silence watch) when the
service runs its workers; FastAPI merges it into the app's lifespan, after the database is set up.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

from fastapi import APIRouter, FastAPI, Request

from service.api.deps import Coordinator, EhrSystem, NotificationSender, SessionsDep, SettingsDep, read_body
from service.api.responses import FhirResponse
from service.app import channels, notifications
from service.app.intake import ChannelPolicy, process_notification
from service.app.sites import site_directory
from service.app.subscriptions import receive_subscription_notification
from service.ehr.directory import EhrDirectory
from service.fhir.parse import check_entry_count, load_json
from service.fhir.subscription import parse_subscription_notification
from service.settings import Settings


@asynccontextmanager
async def intake_worker(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    if not settings.run_worker:
        yield
        return
    # Each item is read from the EHR of its own site, with that site's authorisation (as its write-back).
    # The app's directory when it has one (one SMART token per site for write-back and intake alike).
    shared = getattr(app.state, "ehr", None)
    readers = shared if isinstance(shared, EhrDirectory) else site_directory(app.state.sessions, settings)
    stop, wake = asyncio.Event(), asyncio.Event()
    app.state.intake_wake = wake
    task = asyncio.create_task(channels.run_intake_worker(app.state.sessions, readers, settings, stop, wake))
    try:
        yield
    finally:
        stop.set()
        with suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=30)
        if readers is not shared:
            await readers.aclose()


router = APIRouter(tags=["intake"], lifespan=intake_worker)

NOTIFICATION_ENDPOINT = "/fhir/subscription-notification"


@router.post(
    "/fhir/$process-message",
    response_class=FhirResponse,
    summary="Receive a Da Vinci notification message Bundle (admit, transfer, discharge)",
)
async def process_message(
    request: Request, caller: EhrSystem, sessions: SessionsDep, settings: SettingsDep
) -> FhirResponse:
    data = load_json(await read_body(request, settings), "Bundle")
    check_entry_count(data, settings.max_bundle_entries)
    answer = await process_notification(sessions, caller.site, data, settings.expected_discharge_extension)
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
    wake: asyncio.Event | None = getattr(request.app.state, "intake_wake", None)
    if wake is not None:
        wake.set()  # queued work (id-only, empty, a gap) is picked up now rather than at the next poll
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
