"""The safety net's feed: a site's coordinator lists, acknowledges and resolves the alerts about the site's
clients (and sets the site's thresholds); a peer organization's coordinator does the same for supervision alerts
about its own peers and records check-ins; a peer sees their clients' recent weeks against the minimum."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from service.api.deps import Coordinator, OrgCoordinator, Peer, SessionsDep, SettingsDep
from service.api.text import Input
from service.app import alerts as use
from service.app import supervision
from service.domain.safety import Thresholds

router = APIRouter(prefix="/api", tags=["safety net"])

State = Literal["open", "acknowledged", "resolved"]
StateQuery = Annotated[list[State] | None, Query(description="open and acknowledged unless given (repeatable)")]


class AlertOut(BaseModel):
    id: str
    kind: str = Field(description="no-contact | unassigned | below-minimum | supervision-overdue | cover-needed")
    state: State
    client_id: str | None
    episode_id: str | None
    peer_id: str | None
    days: int | None = Field(description="days since discharge (no-contact, unassigned)")
    detail: dict[str, str | int | None]
    opened_at: datetime
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    resolved_at: datetime | None
    resolved_by: str | None
    resolution: str | None
    note: str | None


def _out(a: use.AlertView) -> AlertOut:
    return AlertOut(
        id=a.id,
        kind=a.kind,
        state=a.state,
        client_id=a.client_id,
        episode_id=a.episode_id,
        peer_id=a.peer_id,
        days=a.days,
        detail=a.detail,
        opened_at=a.opened_at,
        acknowledged_at=a.acknowledged_at,
        acknowledged_by=a.acknowledged_by,
        resolved_at=a.resolved_at,
        resolved_by=a.resolved_by,
        resolution=a.resolution,
        note=a.note,
    )


class ResolveIn(Input):
    note: str | None = Field(default=None, max_length=500, description="not clinical: what was done")
    end_reason: str | None = Field(
        default=None, description="a drop-out confirmed: end the episode (episode-end-reason)"
    )
    rematch_reason: str | None = Field(default=None, description="or ask for a new peer (rematch-reason)")


@router.get("/alerts", summary="The site's safety-net alerts, oldest first")
async def list_alerts(caller: Coordinator, sessions: SessionsDep, state: StateQuery = None) -> list[AlertOut]:
    return [_out(a) for a in await use.list_alerts(sessions, site=caller.site, states=state)]


@router.post("/alerts/{alert_id}/acknowledge", summary="Someone is on it")
async def acknowledge(alert_id: str, caller: Coordinator, sessions: SessionsDep) -> AlertOut:
    return _out(await use.acknowledge(sessions, alert_id, caller.subject, site=caller.site))


@router.post("/alerts/{alert_id}/resolve", summary="Close the alert; optionally end the episode or re-match")
async def resolve(alert_id: str, body: ResolveIn, caller: Coordinator, sessions: SessionsDep) -> AlertOut:
    how = use.Resolution(body.note, body.end_reason, body.rematch_reason)
    return _out(await use.resolve(sessions, alert_id, caller.subject, how, site=caller.site))


class ThresholdsIn(Input):
    no_contact_days: int = Field(ge=1, le=365)
    unassigned_days: int = Field(ge=1, le=365)
    weekly_minimum_minutes: int = Field(ge=1, le=7 * 24 * 60)
    ehr_flags: bool = Field(default=False, description="write no-contact and unassigned alerts to the EHR as Flags")


class ThresholdsOut(BaseModel):
    no_contact_days: int
    unassigned_days: int
    weekly_minimum_minutes: int
    ehr_flags: bool


@router.get("/alerts/thresholds", summary="The site's safety-net thresholds")
async def get_thresholds(caller: Coordinator, sessions: SessionsDep, settings: SettingsDep) -> ThresholdsOut:
    t = await use.thresholds(sessions, settings, caller.site)
    return ThresholdsOut(**vars(t))


@router.put("/alerts/thresholds", summary="Set the site's safety-net thresholds")
async def put_thresholds(body: ThresholdsIn, caller: Coordinator, sessions: SessionsDep) -> ThresholdsOut:
    wanted = Thresholds(body.no_contact_days, body.unassigned_days, body.weekly_minimum_minutes, body.ehr_flags)
    return ThresholdsOut(**vars(await use.set_thresholds(sessions, caller.site, wanted)))


# --- peer organizations: supervision ---------------------------------------------------------------------------


@router.get("/org/alerts", summary="Supervision alerts about the organization's peers")
async def org_alerts(caller: OrgCoordinator, sessions: SessionsDep, state: StateQuery = None) -> list[AlertOut]:
    return [_out(a) for a in await use.list_alerts(sessions, organization=caller.organization, states=state)]


@router.post("/org/alerts/{alert_id}/acknowledge", summary="Someone is on it")
async def org_acknowledge(alert_id: str, caller: OrgCoordinator, sessions: SessionsDep) -> AlertOut:
    return _out(await use.acknowledge(sessions, alert_id, caller.subject, organization=caller.organization))


@router.post("/org/alerts/{alert_id}/resolve", summary="Close the alert")
async def org_resolve(alert_id: str, body: ResolveIn, caller: OrgCoordinator, sessions: SessionsDep) -> AlertOut:
    how = use.Resolution(body.note, body.end_reason, body.rematch_reason)
    return _out(await use.resolve(sessions, alert_id, caller.subject, how, organization=caller.organization))


class CheckInIn(Input):
    """A date and an outcome, nothing else: a field for notes is refused, not dropped (no clinical notes)."""

    model_config = ConfigDict(extra="forbid")

    held_on: date
    outcome: Literal["well", "support-offered", "pause-agreed"]


class CheckInOut(BaseModel):
    id: str
    peer_id: str
    held_on: date
    outcome: str
    recorded_by: str
    recorded_at: datetime


@router.post("/org/peers/{peer_id}/check-ins", status_code=201, summary="Record a supervision check-in (no notes)")
async def record_check_in(peer_id: str, body: CheckInIn, caller: OrgCoordinator, sessions: SessionsDep) -> CheckInOut:
    assert caller.organization is not None
    made = await supervision.record_check_in(
        sessions, caller.organization, peer_id, body.held_on, body.outcome, caller.subject
    )
    return CheckInOut(**vars(made))


@router.get("/org/peers/{peer_id}/check-ins", summary="A peer's supervision check-ins, latest first")
async def list_check_ins(peer_id: str, caller: OrgCoordinator, sessions: SessionsDep) -> list[CheckInOut]:
    assert caller.organization is not None
    return [CheckInOut(**vars(c)) for c in await supervision.check_ins(sessions, caller.organization, peer_id)]


# --- the peer: their clients' weeks ------------------------------------------------------------------------


class ClientWeekOut(BaseModel):
    client_id: str
    week_start: datetime
    contacts: int
    minutes: int
    below_minimum: bool


@router.get("/me/weeks", summary="My clients' last four complete weeks against the weekly minimum")
async def my_weeks(caller: Peer, sessions: SessionsDep, settings: SettingsDep) -> list[ClientWeekOut]:
    return [ClientWeekOut(**vars(w)) for w in await use.peer_weeks(sessions, settings, caller.subject)]
