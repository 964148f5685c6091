"""Peer wellbeing: a peer organization's coordinator records supervision check-ins with its own peers (a date
and an outcome, never notes); the safety net flags a peer whose check-in is overdue."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import select

from service.app import peers
from service.app.clock import new_id, utcnow
from service.errors import InvalidResource
from service.store.alerts import SupervisionCheckIn
from service.store.db import SessionFactory, transaction

# How a check-in went. Codes only: what was said stays between the peer and their supervisor.
OUTCOMES = frozenset({"well", "support-offered", "pause-agreed"})


@dataclass(frozen=True)
class CheckIn:
    id: str
    peer_id: str
    held_on: date
    outcome: str
    recorded_by: str
    recorded_at: datetime


def _view(row: SupervisionCheckIn) -> CheckIn:
    return CheckIn(row.id, row.peer_id, row.held_on, row.outcome, row.recorded_by, row.recorded_at)


async def record_check_in(
    sessions: SessionFactory, organization: str, peer_id: str, held_on: date, outcome: str, who: str
) -> CheckIn:
    """Record a check-in with one of the organization's own peers (another's peer is not found)."""
    if outcome not in OUTCOMES:
        raise InvalidResource(f"outcome must be one of {sorted(OUTCOMES)}", "outcome")
    now = utcnow()
    if held_on > (now + timedelta(days=1)).date():
        raise InvalidResource("a check-in is recorded once it has been held", "held_on")
    async with transaction(sessions) as session:
        await peers.peer_of_organization(session, organization, peer_id)
        row = SupervisionCheckIn(
            id=new_id(),
            peer_id=peer_id,
            organization=organization,
            held_on=held_on,
            outcome=outcome,
            recorded_by=who,
            recorded_at=now,
        )
        session.add(row)
        return _view(row)


async def check_ins(sessions: SessionFactory, organization: str, peer_id: str) -> Sequence[CheckIn]:
    """A peer's check-ins, latest first."""
    async with sessions() as session:
        await peers.peer_of_organization(session, organization, peer_id)
        rows = await session.execute(
            select(SupervisionCheckIn)
            .where(SupervisionCheckIn.peer_id == peer_id)
            .order_by(SupervisionCheckIn.held_on.desc(), SupervisionCheckIn.id)
        )
        return [_view(r) for r in rows.scalars()]
