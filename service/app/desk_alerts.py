"""The coordinator's alerts page: the site's safety-net alerts in the desk's own words (the client's name as the
client list shows it, the peer's name, days since discharge), and acknowledging or resolving one through the
safety net's use cases (service/app/alerts.py), so the page and the API can never act differently.

An alert carries ids only; names are joined here, from the site's own clients and peers, for the site's own
coordinator. Another site's alert is not found, exactly as a missing one (alerts.alert_in_scope)."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from service.app import alerts, desk
from service.app.clock import utcnow
from service.domain.vocabulary import END_REASONS, REMATCH_REASONS
from service.errors import InvalidResource
from service.store import identity as people_store
from service.store import repository
from service.store.db import SessionFactory

CLOSE = "close"  # resolve the alert and nothing else
END_PREFIX, REMATCH_PREFIX = "end:", "rematch:"
# What the resolve form offers: just close it, confirm a drop-out by ending the episode, or ask for a new peer.
RESOLVE_CHOICES = (
    CLOSE,
    *(END_PREFIX + r for r in sorted(END_REASONS)),
    *(REMATCH_PREFIX + r for r in sorted(REMATCH_REASONS)),
)


@dataclass(frozen=True)
class AlertRow:
    alert: alerts.AlertView
    client_name: str | None  # as the desk shows the client (None: no name on record)
    peer_name: str | None  # None: nobody assigned, or a peer not known here
    days_since_discharge: int | None
    minimum: int | None  # below-minimum: the weekly minimum the weeks fell under
    acknowledged_by: str | None  # a registered coordinator's name, else who the record names
    resolved_by: str | None


async def alert_rows(
    sessions: SessionFactory, site: str, states: Collection[str] | None = None, now: datetime | None = None
) -> list[AlertRow]:
    """The site's alerts (open and acknowledged unless `states` says otherwise), oldest first, in plain words."""
    now = now or utcnow()
    found = await alerts.list_alerts(sessions, site=site, states=states, now=now)
    if not found:
        return []
    episodes = await desk.episode_rows(sessions, site, {a.episode_id for a in found if a.episode_id is not None})
    async with sessions() as session:
        peers = {p.id: p.name for p in await repository.peers(session)}
        names = await _people_names(session, {w for a in found for w in (a.acknowledged_by, a.resolved_by) if w})
    rows = []
    for a in found:
        episode = episodes.get(a.episode_id) if a.episode_id is not None else None
        days = a.days
        if days is None and episode is not None and episode.discharged_at is not None:
            days = (now - episode.discharged_at).days
        minimum = a.detail.get("minimum")
        rows.append(
            AlertRow(
                alert=a,
                client_name=episode.name if episode is not None else None,
                peer_name=peers.get(a.peer_id) if a.peer_id is not None else None,
                days_since_discharge=days,
                minimum=minimum if isinstance(minimum, int) else None,
                acknowledged_by=names.get(a.acknowledged_by or "", a.acknowledged_by),
                resolved_by=names.get(a.resolved_by or "", a.resolved_by),
            )
        )
    return rows


async def _people_names(session: AsyncSession, subjects: set[str]) -> dict[str, str]:
    """A registered coordinator acts under their person id; show their name (others stay as recorded)."""
    found: dict[str, str] = {}
    for subject in subjects:
        person = await session.get(people_store.Person, subject)
        if person is not None:
            found[subject] = person.name
    return found


def resolution(choice: str, note: str | None) -> alerts.Resolution:
    """The resolve form's choice as the safety net's Resolution (an unknown choice names the field)."""
    if choice not in RESOLVE_CHOICES:
        raise InvalidResource("choose one of the offered ways to resolve the alert", "how")
    note = (note or "").strip() or None
    if choice.startswith(END_PREFIX):
        return alerts.Resolution(note, end_reason=choice.removeprefix(END_PREFIX))
    if choice.startswith(REMATCH_PREFIX):
        return alerts.Resolution(note, rematch_reason=choice.removeprefix(REMATCH_PREFIX))
    return alerts.Resolution(note)
