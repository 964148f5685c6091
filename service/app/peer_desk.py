"""The peer's phone screens: my clients with their consented summary, my contacts with whether the hospital
has them, and the contact form, through the same use cases as the API (summary, contacts, matching)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime

import fhir_profiles
from consent.categories import DataCategory
from service.app import alerts, contacts, matching, refusals, summary
from service.app.clock import utcnow
from service.domain import safety
from service.domain.vocabulary import ContactKind, PeerStatus
from service.errors import NotFound
from service.fhir.web_view import SummaryLine, contact_encounter, summary_lines
from service.settings import Settings
from service.store import alerts as alert_store
from service.store import web as store
from service.store.db import SessionFactory
from service.store.models import Contact, Episode


@dataclass(frozen=True)
class ContactRow:
    id: str
    kind: str
    started_at: datetime
    minutes: int
    cancelled: bool
    delivered: bool  # the EHR has this version (delivered since the last change)
    version: int


@dataclass(frozen=True)
class MyClient:
    client_id: str
    name: str | None  # only when the client's consent lets this peer see it
    lines: tuple[SummaryLine, ...]
    stay_shared: bool  # admission-discharge is shared: the stay's state, expected discharge and readmission show
    on_ward: bool
    expected_discharge_at: datetime | None
    readmission: bool
    contacts: tuple[ContactRow, ...]


def _row(c: Contact) -> ContactRow:
    return ContactRow(
        c.id, c.kind, c.started_at, c.minutes, c.status == "entered-in-error", c.delivered_at is not None, c.version_id
    )


async def _client(sessions: SessionFactory, base_url: str, peer_id: str, client_id: str) -> MyClient:
    # The summary use case decides (consent) and audits the disclosure, exactly as $peer-summary does.
    lines = tuple(summary_lines(await summary.read_summary(sessions, base_url, peer_id, client_id)))
    async with sessions() as session:
        mine = {c.id: e for e, c in await store.peer_open_episodes(session, peer_id)}
        episode = mine.get(client_id)
        if episode is None:
            raise NotFound(f"Patient/{client_id} is not known")
        rows = await store.contacts_of_episode(session, episode.id, peer_id)
    name = next((line.value for line in lines if line.category is DataCategory.PREFERRED_NAME), None)
    shared = any(line.category is DataCategory.ADMISSION_DISCHARGE for line in lines)
    return MyClient(
        client_id=client_id,
        name=name,
        lines=lines,
        stay_shared=shared,
        on_ward=shared and episode.state == "on-ward",
        expected_discharge_at=episode.expected_discharge_at if shared else None,
        readmission=shared and episode.readmission,
        contacts=tuple(_row(c) for c in rows),
    )


async def my_clients(sessions: SessionFactory, base_url: str, peer_id: str) -> list[MyClient]:
    """Each client assigned to the peer, with only what their consent shares (each read audited)."""
    async with sessions() as session:
        ids = [c.id for _, c in await store.peer_open_episodes(session, peer_id)]
    return [await _client(sessions, base_url, peer_id, client_id) for client_id in ids]


async def my_client(sessions: SessionFactory, base_url: str, peer_id: str, client_id: str) -> MyClient:
    """One of the peer's clients; anyone else's is the same 404 as a client that does not exist."""
    return await _client(sessions, base_url, peer_id, client_id)


async def log_contact(
    sessions: SessionFactory,
    peer_id: str,
    client_id: str,
    kind: ContactKind,
    started_at: datetime,
    minutes: int,
    form_id: str,
) -> str:
    """Record a contact from the form. The form's one-time id becomes the app identifier, so a double tap or a
    resent form records it once."""
    identifier = f"{fhir_profiles.CANONICAL}/sid/web-contact-form|{form_id}"
    encounter = contact_encounter(client_id, kind.value, started_at, minutes, app_identifier=identifier)
    recorded = await contacts.record_contact(sessions, peer_id, encounter)
    return str(recorded.encounter["id"])


def new_form_id() -> str:
    return secrets.token_urlsafe(16)


async def correct_contact(
    sessions: SessionFactory,
    peer_id: str,
    contact_id: str,
    kind: ContactKind,
    started_at: datetime,
    minutes: int,
    version: int,
) -> None:
    """Correct a contact; the new version goes to the EHR (If-Match on the version the form showed)."""
    client_id = await _client_of_contact(sessions, peer_id, contact_id)
    encounter = contact_encounter(client_id, kind.value, started_at, minutes, contact_id=contact_id)
    await contacts.update_contact(sessions, peer_id, contact_id, encounter, version)


async def cancel_contact(sessions: SessionFactory, peer_id: str, contact_id: str, version: int) -> None:
    """Cancel a contact recorded by mistake: entered-in-error, which the EHR receives too."""
    async with sessions() as session:
        contact = await session.get(Contact, contact_id)
    if contact is None or contact.peer_id != peer_id:
        raise refusals.not_theirs(peer_id, "Encounter", contact_id)
    client_id = await _client_of_contact(sessions, peer_id, contact_id)
    encounter = contact_encounter(
        client_id, contact.kind, contact.started_at, contact.minutes, contact_id=contact_id, status="entered-in-error"
    )
    await contacts.update_contact(sessions, peer_id, contact_id, encounter, version)


async def _client_of_contact(sessions: SessionFactory, peer_id: str, contact_id: str) -> str:
    async with sessions() as session:
        contact = await session.get(Contact, contact_id)
        episode = await session.get(Episode, contact.episode_id) if contact is not None else None
    if contact is None or episode is None or contact.peer_id != peer_id:
        raise refusals.not_theirs(peer_id, "Encounter", contact_id)
    return episode.client_id


async def my_status(sessions: SessionFactory, peer_id: str) -> PeerStatus:
    return (await matching.read_profile(sessions, peer_id)).profile.status


async def set_my_status(sessions: SessionFactory, peer_id: str, paused: bool) -> PeerStatus:
    """Pause (no new clients; current ones stay) or resume myself."""
    status = PeerStatus.PAUSED if paused else PeerStatus.ACTIVE
    return (await matching.set_status(sessions, peer_id, status)).status


@dataclass(frozen=True)
class ClientWeeks:
    """A client's weeks as the safety net counts them (from discharge, 7 days each) against the site's minimum:
    the week in progress and the last complete ones, each complete week under the minimum marked."""

    minimum: int
    current: safety.Week
    complete: tuple[safety.Week, ...]  # oldest first, at most the last four

    def under(self, week: safety.Week) -> bool:
        return week.minutes < self.minimum


async def my_weeks(
    sessions: SessionFactory, settings: Settings, peer_id: str, now: datetime | None = None, last: int = 4
) -> dict[str, ClientWeeks]:
    """Client id -> weeks, for each of the peer's clients now in the community. The same facts, rules and site
    thresholds as the safety net's run and GET /api/me/weeks, so "under the minimum" means the same everywhere."""
    now = now or utcnow()
    async with sessions() as session:
        facts = await alert_store.episode_facts(session, open_at=now, peer_id=peer_id)
    readmitted = safety.successors(e for e in facts if e.started_at <= now)
    minimums: dict[str, int] = {}
    out: dict[str, ClientWeeks] = {}
    for e in facts:
        later = readmitted.get(e.id)
        if e.discharged_at is None or safety.peer_at(e, now) != peer_id or not safety.in_community(e, later, now):
            continue
        if e.site not in minimums:
            minimums[e.site] = (await alerts.thresholds(sessions, settings, e.site)).weekly_minimum_minutes
        complete = safety.weeks(e, later, now)
        start = e.discharged_at + len(complete) * safety.WEEK
        made = [m for t, m in e.contacts if start <= t <= now]
        out[e.client_id] = ClientWeeks(
            minimums[e.site], safety.Week(start, len(made), sum(made)), tuple(complete[-last:])
        )
    return out
