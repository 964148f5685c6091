"""What an outbox row announces, built from current state and written to the EHR so that it lands once.

Contacts become Encounters, assignments the client's program CareTeam, each with its peer's Practitioner
first. How a write lands once (PUT with our id, or a conditional create with duplicates resolved) is the EHR
client's `place` (service/fhir/client.py), in the EHR's write mode (PEERWAY_EHR_WRITE_MODE).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any

import fhir_profiles
from service.app.contacts import OUTBOX_CONTACT
from service.app.delivery import OUTBOX_CARETEAM
from service.domain import ContactKind
from service.fhir import build, careteam
from service.fhir.client import EhrClient
from service.settings import Settings
from service.store import delivery as store
from service.store.db import SessionFactory
from service.store.models import Client, Episode, PeerSupporter

PRACTITIONER_REWRITE_SECONDS = 600.0  # a worker re-writes a peer's Practitioner at most this often


class Undeliverable(Exception):
    """The row cannot be delivered whatever the EHR does (its subject is gone, an unknown kind)."""


class Writer:
    """Delivers rows for one worker; remembers which Practitioners it has written lately."""

    def __init__(
        self,
        sessions: SessionFactory,
        ehr: EhrClient,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sessions = sessions
        self._ehr = ehr
        self._settings = settings
        self._clock = clock
        self._practitioners: dict[str, tuple[str, str, float]] = {}  # peer id -> (name, reference, when)
        self._writing: dict[str, asyncio.Lock] = {}  # one write of a peer's Practitioner at a time
        self._contacts: dict[str, store.ContactState] = {}

    async def prefetch(self, rows: Sequence[tuple[str, str]]) -> None:
        """Read the state of a claimed batch's contacts in one query ((kind, subject id) per row).

        A row not delivered from this read (released at shutdown) reads its state afresh next time.
        """
        ids = [subject for kind, subject in rows if kind == OUTBOX_CONTACT]
        if ids:
            async with self._sessions() as session:
                self._contacts = {state[0].id: state for state in await store.contact_states(session, ids)}

    async def deliver(self, kind: str, subject_id: str) -> str | None:
        """Write what the row announces; answers a note for the row (duplicates resolved) or None."""
        if kind == OUTBOX_CONTACT:
            return await self._contact(subject_id)
        if kind == OUTBOX_CARETEAM:
            return await self._careteam(subject_id)
        raise Undeliverable(f"unknown outbox kind {kind}")

    # --- what each kind writes ---------------------------------------------------------------------------------

    async def _contact(self, contact_id: str) -> str | None:
        state = self._contacts.pop(contact_id, None)
        if state is None:
            async with self._sessions() as session:
                found = await store.contact_states(session, [contact_id])
            if not found:
                raise Undeliverable(f"contact {contact_id} no longer exists")
            state = found[0]
        contact, episode, peer, client = state
        practitioner, first = await self._practitioner(peer.id, peer.name)
        view = build.ContactView(
            contact_id=contact.id,
            kind=ContactKind(contact.kind),
            started_at=contact.started_at,
            minutes=contact.minutes,
            subject_reference=f"Patient/{client.ehr_patient_id}",
            hospital_stay_reference=f"Encounter/{episode.ehr_encounter_id}",
            practitioner_reference=practitioner,
            peer_id=peer.id,
            peer_name=peer.name,
        )
        identifier = f"{fhir_profiles.CONTACT_IDENTIFIER_SYSTEM}|{contact.id}"
        _, note = await self._upsert(build.contact_encounter(view), identifier, mutable=False)
        return _join(first, note)

    async def _careteam(self, episode_id: str) -> str | None:
        async with self._sessions() as session:
            episode = await session.get(Episode, episode_id)
            client = await session.get(Client, episode.client_id) if episode else None
            members = list(await store.careteam_members(session, episode_id))
            peer_ids = {m.peer_id for m in members} | ({episode.peer_id} if episode and episode.peer_id else set())
            peers = {p: await session.get(PeerSupporter, p) for p in sorted(peer_ids)}
        if episode is None or client is None:
            raise Undeliverable(f"episode {episode_id} no longer exists")
        periods = [(m.peer_id, m.started_at, m.ended_at) for m in members]
        if not periods and episode.peer_id and episode.assigned_at:  # assigned before the history was kept
            periods = [(episode.peer_id, episode.assigned_at, None)]
        notes: list[str | None] = []
        views = []
        for peer_id, started_at, ended_at in periods:
            peer = peers.get(peer_id)
            if peer is None:
                raise Undeliverable(f"peer supporter {peer_id} no longer exists")
            reference, note = await self._practitioner(peer.id, peer.name)
            notes.append(note)
            views.append(careteam.CareTeamMemberView(reference, peer.name, started_at, ended_at))
        view = careteam.CareTeamView(
            episode_id=episode.id,
            subject_reference=f"Patient/{client.ehr_patient_id}",
            hospital_stay_reference=f"Encounter/{episode.ehr_encounter_id}",
            organization_reference=self._settings.program_organization_reference,
            organization_name=self._settings.program_organization_name,
            members=views,
        )
        _, note = await self._upsert(
            careteam.program_careteam(view), careteam.careteam_identifier(episode.id), mutable=True
        )
        return _join(*notes, note)

    async def _practitioner(self, peer_id: str, name: str) -> tuple[str, str | None]:
        """The peer's Practitioner at the EHR (written unless this worker wrote it, unchanged, lately)."""
        async with self._writing.setdefault(peer_id, asyncio.Lock()):
            known = self._practitioners.get(peer_id)
            now = self._clock()
            if known is not None and known[0] == name and now - known[2] < PRACTITIONER_REWRITE_SECONDS:
                return known[1], None
            identifier = f"{fhir_profiles.PEER_IDENTIFIER_SYSTEM}|{peer_id}"
            reference, note = await self._upsert(build.practitioner(peer_id, name), identifier, mutable=True)
            self._practitioners[peer_id] = (name, reference, now)
            return reference, note

    # --- idempotent writes -------------------------------------------------------------------------------------

    async def _upsert(self, resource: dict[str, Any], identifier: str, *, mutable: bool) -> tuple[str, str | None]:
        """Write the resource once; answers its reference at the EHR and a note if duplicates were resolved."""
        placed = await self._ehr.place(resource, identifier, mode=self._settings.ehr_write_mode, mutable=mutable)
        return placed.reference, placed.note


def _join(*notes: str | None) -> str | None:
    kept = [n for n in notes if n]
    return "; ".join(kept) if kept else None
