"""CDS Hooks: the patient-consent-consult service (LEAP's request context and cards)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends
from pydantic import ConfigDict, Field

from service.api.deps import SessionsDep, SettingsDep, scope, site_actor
from service.api.text import Input
from service.app.consult import ConsultQuery, Identifier, consult
from service.auth import Principal

router = APIRouter(prefix="/cds-services", tags=["cds-hooks"])
Caller = Annotated[Principal, Depends(site_actor)]
HOOK = "patient-consent-consult"


class SystemValue(Input):
    system: str | None = None
    value: str = Field(min_length=1, max_length=200)


class SystemCode(Input):
    system: str = Field(min_length=1)
    code: str = Field(min_length=1)


class ConsultContext(Input):
    model_config = ConfigDict(populate_by_name=True)

    patientId: SystemValue | list[SystemValue]
    actor: SystemValue | list[SystemValue] | None = None
    purposeOfUse: str | list[str] = "COC"
    scope: str | None = None
    category: list[SystemCode] | None = None
    class_: list[SystemCode] | None = Field(default=None, alias="class")


class HookRequest(Input):
    hook: Literal["patient-consent-consult"]
    hookInstance: str = Field(min_length=1)
    context: ConsultContext


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [] if value is None else [value]


@router.get("", summary="CDS Hooks discovery")
async def discovery() -> dict[str, Any]:
    return {
        "services": [
            {
                "id": HOOK,
                "hook": HOOK,
                "title": "Patient consent consult (Peerway)",
                "description": "Does the client's consent permit this actor, for this purpose, to access these "
                "categories of the client's information?",
            }
        ]
    }


@router.post(
    f"/{HOOK}",
    summary="Ask for a consent decision (LEAP patient-consent-consult)",
    dependencies=[Depends(scope("system/Consent.r"))],
)
async def patient_consent_consult(
    body: HookRequest, caller: Caller, sessions: SessionsDep, settings: SettingsDep
) -> dict[str, Any]:
    context = body.context
    scopes = [c.code for c in context.category or []] + ([context.scope] if context.scope else [])
    query = ConsultQuery(
        patient_ids=[Identifier(p.system, p.value) for p in _listed(context.patientId)],
        actors=[Identifier(a.system, a.value) for a in _listed(context.actor)],
        purposes=_listed(context.purposeOfUse) or ["COC"],
        scopes=scopes or ["patient-privacy"],
        classes=[(c.system, c.code) for c in context.class_ or []],
    )
    answer = await consult(sessions, caller.site, query)
    extension: dict[str, Any] = {"decision": answer.decision, "obligations": answer.obligations}
    return {
        "cards": [
            {
                "summary": answer.decision,
                "detail": answer.detail,
                "indicator": answer.indicator,
                "source": {"label": "Peerway consent decision service", "url": f"{settings.base_url}/cds-services"},
                "extension": extension,
            }
        ]
    }
