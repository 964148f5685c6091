"""Hospital events in: Da Vinci notifications over $process-message."""

from __future__ import annotations

from fastapi import APIRouter, Request

from service.api.deps import EhrSystem, SessionsDep, SettingsDep, read_body
from service.api.responses import FhirResponse
from service.app.intake import process_notification
from service.fhir.parse import load_json

router = APIRouter(tags=["intake"])


@router.post(
    "/fhir/$process-message",
    response_class=FhirResponse,
    summary="Receive a Da Vinci notification message Bundle (admit, transfer, discharge)",
)
async def process_message(
    request: Request, caller: EhrSystem, sessions: SessionsDep, settings: SettingsDep
) -> FhirResponse:
    data = load_json(await read_body(request, settings), "Bundle")
    answer = await process_notification(sessions, caller.site, data)
    return FhirResponse(answer.body, status_code=answer.status)
