"""Coordinators record the client's own answers to Peerway's client-background Questionnaire."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from service.api import fhir_rest
from service.api.deps import Coordinator, SessionsDep, SettingsDep
from service.api.responses import FhirResponse
from service.app.answers import record_answers

router = APIRouter(prefix="/fhir/QuestionnaireResponse", tags=["coordinator"])


@router.post(
    "",
    response_class=FhirResponse,
    status_code=201,
    summary="Record the client's answers to https://peerway.github.io/fhir/Questionnaire/client-background",
    dependencies=[Depends(fhir_rest.json_only)],
)
async def create_answers(
    request: Request, caller: Coordinator, sessions: SessionsDep, settings: SettingsDep
) -> FhirResponse:
    data = await fhir_rest.fhir_body(request, settings, "QuestionnaireResponse")
    return FhirResponse(await record_answers(sessions, caller.site, data), status_code=201)
