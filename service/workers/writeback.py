"""What a delivery job announces, built from current state and written to the EHR so that it lands once.

Contacts become Encounters, assignments the client's program CareTeam, each with its peer's Practitioner
first; a safety-net alert about a client not reached becomes a Flag (when the site asks for it). How a write
lands once (PUT with our id, or a conditional create with duplicates resolved) is the EHR client's `place`
(service/ehr/client.py), in the EHR's write mode.

Every job goes to its client's own site: the contact's (or the episode's) client names the site, and the site's
EHR client and write mode come from the EhrDirectory (service/ehr/directory.py). In the "batch" write mode the
contacts of a claimed batch are written to each site's EHR in one FHIR batch request when the batch is read
(`prefetch`), and each job then reports what the EHR answered to its own entry; a batch the EHR refuses as a
whole (or answers unreadably) leaves every job to write its Encounter on its own, as in "put". A peer's Practitioner is
written to each EHR it appears in, so the Practitioners written lately are remembered per site: in the database,
for every worker process, and in each process, to skip the query.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import fhir_profiles
from service.app.alerts import OUTBOX_FLAG
from service.app.clock import utcnow
from service.app.contacts import OUTBOX_CONTACT
from service.app.delivery import OUTBOX_CARETEAM
from service.domain.vocabulary import ContactKind
from service.ehr.client import BatchNotTaken, EhrClient
from service.ehr.connection import UnsupportedFhirVersion, WriteMode
from service.ehr.directory import FixedEhr
from service.errors import UpstreamError
from service.fhir import build, careteam, flag
from service.settings import Settings
from service.store import delivery as store
from service.store.alerts import Alert
from service.store.db import SessionFactory, transaction
from service.store.models import Client, Episode, PeerSupporter
from service.workers.retry import Permanent, is_transient

PRACTITIONER_REWRITE_SECONDS = 600.0  # a worker re-writes a peer's Practitioner at most this often
BATCH_ENTRIES = 100  # Encounters in one batch request at most (a claim may hold up to PEERWAY_OUTBOX_BATCH_SIZE)

log = logging.getLogger(__name__)


class WriteTargets(Protocol):
    """Where a site's writes go: its EHR client and write mode (an EhrDirectory, or one FixedEhr for all)."""

    async def write_target(self, site: str) -> tuple[EhrClient, WriteMode]: ...


def write_targets(ehr: EhrClient | WriteTargets, settings: Settings) -> WriteTargets:
    """A single EhrClient (tools, tests) serves every site in the settings' write mode."""
    return FixedEhr(ehr, settings.ehr_write_mode) if isinstance(ehr, EhrClient) else ehr


class Undeliverable(Permanent):
    """The job cannot be delivered whatever the EHR does (its subject is gone, an unknown kind): a dead letter."""


# How long a site whose EHR refused a batch as a request (404, 405, 501, a 413 to one Encounter...) or answered it
# unreadably is written one Encounter at a time before a batch is tried again (after a 401, the shorter time); and
# how long, after a 413 to a larger batch, its batches stay at the size that was tried next.
UNBATCHED_SECONDS = 600.0
UNBATCHED_AFTER_401_SECONDS = 60.0


class Writer:
    """Delivers rows for one worker; remembers which Practitioners it has written lately."""

    def __init__(
        self,
        sessions: SessionFactory,
        ehr: EhrClient | WriteTargets,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sessions = sessions
        self._ehr = write_targets(ehr, settings)
        self._settings = settings
        self._clock = clock
        # (site, peer id) -> (name, reference at that site's EHR, when)
        self._practitioners: dict[tuple[str, str], tuple[str, str, float]] = {}
        self._writing: dict[tuple[str, str], asyncio.Lock] = {}  # one write of a peer's Practitioner at a time
        self._contacts: dict[str, store.ContactState] = {}
        # contact id -> what the EHR answered to its entry of a batch (None: written) and the Practitioner's note,
        # once for each of the batch's jobs about that contact (a correction queues a job of its own)
        self._batched: dict[str, list[tuple[UpstreamError | None, str | None]]] = {}
        # site -> until when its EHR is written one Encounter at a time (it refused a batch as a request)
        self._unbatched: dict[str, float] = {}
        self._entries_per_batch: dict[str, tuple[int, float]] = {}  # site: (entries, until) after a 413

    async def prefetch(self, rows: Sequence[tuple[str, str]]) -> None:
        """Read the state of a claimed batch's contacts in one query ((kind, subject id) per row); for sites in the
        "batch" write mode, write their Encounters then, one batch request per site.

        A row not delivered from this read (released at shutdown) reads its state afresh next time. The next
        batch may be read while this one's last rows are being delivered (run_jobs overlaps rounds), so the states
        (and batch answers) are added to those not yet used, each taken once. A contact is in one claimed batch at
        a time (its jobs are claimed oldest first, one after the other), so any answer still held for a contact
        of this batch is from an earlier claim that ended without its job (the worker stopping): it is dropped,
        never taken for this claim's job.

        A failure here fails no job: a batch not written leaves each job to write its Encounter on its own.
        """
        ids = [subject for kind, subject in rows if kind == OUTBOX_CONTACT]
        for contact_id in ids:
            self._batched.pop(contact_id, None)
        if ids:
            async with self._sessions() as session:
                states = await store.contact_states(session, ids)
            self._contacts.update((state.contact_id, state) for state in states)
            await self._write_batches(states, Counter(ids))

    async def _write_batches(self, states: Sequence[store.ContactState], jobs: Counter[str]) -> None:
        """Each "batch" site's contacts in FHIR batches of PUTs; what the EHR answered is kept per contact."""
        by_site: dict[str, list[store.ContactState]] = {}
        for state in states:
            by_site.setdefault(state.site, []).append(state)
        for site, group in by_site.items():
            start = 0
            while start < len(group):
                size = self._batch_size(site)  # for each request: a 413 to the last makes the next smaller
                try:
                    await self._write_batch(site, group[start : start + size], jobs)
                except Exception as exc:  # a fault of ours (or the database): each job meets it, or not, on its own
                    log.error("could not write a batch to site %s's EHR: %s", site, type(exc).__name__)
                start += size

    async def _write_batch(self, site: str, group: Sequence[store.ContactState], jobs: Counter[str]) -> None:
        try:
            target = await self._ehr.write_target(site)
        except (UpstreamError, UnsupportedFhirVersion):
            return  # each job meets the same answer on its own, and is retried or dead-lettered for it
        if target[1] != "batch" or self._unbatched.get(site, -math.inf) > self._clock():
            return
        entries: list[tuple[str, dict[str, Any], str | None]] = []
        for state in group:
            try:
                practitioner, note = await self._practitioner(target, site, state.peer_id, state.peer_name)
            except UpstreamError:
                continue  # this job writes (and fails) on its own
            entries.append((state.contact_id, build.contact_encounter(_contact_view(state, practitioner)), note))
        if entries:
            await self._send_batch(site, target[0], entries, jobs)

    def _batch_size(self, site: str) -> int:
        """Encounters a batch request to the site holds: BATCH_ENTRIES, or fewer for a while after a 413."""
        size, until = self._entries_per_batch.get(site, (BATCH_ENTRIES, math.inf))
        if until <= self._clock():
            del self._entries_per_batch[site]
            return BATCH_ENTRIES
        return size

    async def _send_batch(
        self, site: str, api: EhrClient, entries: Sequence[tuple[str, dict[str, Any], str | None]], jobs: Counter[str]
    ) -> UpstreamError | None:
        """One batch request, its answers kept per contact; answers the outage it met (None: no outage). Sends
        nothing once the site is written one at a time (a half refused as a request leaves the other to its
        jobs too)."""
        if self._unbatched.get(site, -math.inf) > self._clock():
            return None
        outage: UpstreamError | None = None
        try:
            answers: Sequence[UpstreamError | None] = await api.put_batch([e for _, e, _ in entries])
        except UpstreamError as exc:
            if is_transient(exc.http_status) and not isinstance(exc, BatchNotTaken):
                # The EHR is down or busy: every job of the batch waits as it asks (Retry-After), none is sent
                # on its own meanwhile (that would only add to its load).
                outage = exc
                answers = [exc] * len(entries)
            elif exc.http_status == 413 and len(entries) > 1 and not isinstance(exc, BatchNotTaken):
                # Too large for the EHR: each half in a request of its own (halved again if need be), and the
                # site's next batches no larger for a while. Nothing was written, so nothing is written twice.
                half = (len(entries) + 1) // 2
                self._entries_per_batch[site] = (half, self._clock() + UNBATCHED_SECONDS)
                log.warning(
                    "site %s's EHR refused a batch of %d Encounters as too large: %d a batch for %g s",
                    site,
                    len(entries),
                    half,
                    UNBATCHED_SECONDS,
                )
                outage = await self._send_batch(site, api, entries[:half], jobs)
                if outage is None:
                    return await self._send_batch(site, api, entries[half:], jobs)
                # The first half met an outage: the second waits as it does, rather than adding to its load.
                entries, answers = entries[half:], [outage] * (len(entries) - half)
            else:  # refused as a request, or answered unreadably: each job writes its Encounter on its own,
                # and so do the site's next claims for a while (an EHR without batch support would refuse each;
                # one that refuses our app's batches, or even a batch of one Encounter as too large, would too),
                # but only briefly after a 401: the token may just have lapsed, and the next claim's batch goes
                # with a fresh one
                remembered = UNBATCHED_AFTER_401_SECONDS if exc.http_status == 401 else UNBATCHED_SECONDS
                self._unbatched[site] = self._clock() + remembered
                log.warning(
                    "site %s's EHR did not take a batch of %d Encounters (%s): writing one at a time for %g s",
                    site,
                    len(entries),
                    exc,
                    remembered,
                )
                return None
        for (contact_id, _, note), answer in zip(entries, answers, strict=True):
            self._batched.setdefault(contact_id, []).extend([(answer, note)] * jobs[contact_id])
        return outage

    async def deliver(self, kind: str, subject_id: str) -> str | None:
        """Write what the row announces; answers a note for the row (duplicates resolved) or None."""
        try:
            if kind == OUTBOX_CONTACT:
                return await self._contact(subject_id)
            if kind == OUTBOX_CARETEAM:
                return await self._careteam(subject_id)
            if kind == OUTBOX_FLAG:
                return await self._flag(subject_id)
        except UnsupportedFhirVersion as exc:  # a dead letter that says why, at once: retrying cannot help
            raise Undeliverable(str(exc)) from None
        raise Undeliverable(f"unknown outbox kind {kind}")

    # --- what each kind writes ---------------------------------------------------------------------------------

    async def _contact(self, contact_id: str) -> str | None:
        state = self._contacts.pop(contact_id, None)
        answers = self._batched.get(contact_id)
        if answers:  # written (or refused) in its batch when it was read
            failed, note = answers.pop()
            if not answers:
                del self._batched[contact_id]
            if failed is not None:
                # One answer may stand for several jobs (a batch met by an outage): each raises its own copy, so
                # no traceback or context is piled onto another job's exception.
                raise copy.copy(failed)
            return note
        if state is None:
            async with self._sessions() as session:
                found = await store.contact_states(session, [contact_id])
            if not found:
                raise Undeliverable(f"contact {contact_id} no longer exists")
            state = found[0]
        target = await self._ehr.write_target(state.site)
        practitioner, first = await self._practitioner(target, state.site, state.peer_id, state.peer_name)
        identifier = f"{fhir_profiles.CONTACT_IDENTIFIER_SYSTEM}|{state.contact_id}"
        # Mutable: a peer may correct a contact or cancel it (entered-in-error) after it was first written.
        encounter = build.contact_encounter(_contact_view(state, practitioner))
        _, note = await _upsert(target, encounter, identifier, mutable=True)
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
        target = await self._ehr.write_target(client.site)
        periods = [(m.peer_id, m.started_at, m.ended_at) for m in members]
        if not periods and episode.peer_id and episode.assigned_at:  # assigned before the history was kept
            periods = [(episode.peer_id, episode.assigned_at, None)]
        notes: list[str | None] = []
        views = []
        for peer_id, started_at, ended_at in periods:
            peer = peers.get(peer_id)
            if peer is None:
                raise Undeliverable(f"peer supporter {peer_id} no longer exists")
            reference, note = await self._practitioner(target, client.site, peer.id, peer.name)
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
        _, note = await _upsert(
            target, careteam.program_careteam(view), careteam.careteam_identifier(episode.id), mutable=True
        )
        return _join(*notes, note)

    async def _flag(self, alert_id: str) -> str | None:
        """The alert as a Flag on the client's record, as it stands now (active, or inactive once resolved)."""
        async with self._sessions() as session:
            alert = await session.get(Alert, alert_id)
            episode = await session.get(Episode, alert.subject) if alert is not None else None
            client = await session.get(Client, episode.client_id) if episode is not None else None
        if alert is None or episode is None or client is None:
            raise Undeliverable(f"alert {alert_id} or its episode no longer exists")
        target = await self._ehr.write_target(client.site)
        view = flag.FlagView(
            alert_id=alert.id,
            kind=alert.kind,
            subject_reference=f"Patient/{client.ehr_patient_id}",
            hospital_stay_reference=f"Encounter/{episode.ehr_encounter_id}",
            opened_at=alert.opened_at,
            resolved_at=alert.resolved_at,
            organization_name=self._settings.program_organization_name,
        )
        _, note = await _upsert(target, flag.alert_flag(view), flag.flag_identifier(alert.id), mutable=True)
        return note

    async def _practitioner(
        self, target: tuple[EhrClient, WriteMode], site: str, peer_id: str, name: str
    ) -> tuple[str, str | None]:
        """The peer's Practitioner at the site's EHR: written unless some worker (this one, or another process:
        the database remembers) wrote it there, under the same name, within PRACTITIONER_REWRITE_SECONDS."""
        key = (site, peer_id)
        async with self._writing.setdefault(key, asyncio.Lock()):
            known = self._practitioners.get(key)
            now = self._clock()
            if known is not None and known[0] == name and now - known[2] < PRACTITIONER_REWRITE_SECONDS:
                return known[1], None
            async with self._sessions() as session:
                shared = await store.written_practitioner(session, site, peer_id)
            wall = utcnow()
            if shared is not None and shared.name == name:
                age = (wall - shared.written_at).total_seconds()
                if 0 <= age < PRACTITIONER_REWRITE_SECONDS:
                    self._practitioners[key] = (name, shared.reference, now - age)
                    return shared.reference, None
            identifier = f"{fhir_profiles.PEER_IDENTIFIER_SYSTEM}|{peer_id}"
            reference, note = await _upsert(target, build.practitioner(peer_id, name), identifier, mutable=True)
            async with transaction(self._sessions) as session:
                await store.record_written_practitioner(session, site, peer_id, name, reference, wall)
            self._practitioners[key] = (name, reference, now)
            return reference, note


def _contact_view(state: store.ContactState, practitioner_reference: str) -> build.ContactView:
    """The contact as written to its client's EHR, in that EHR's ids."""
    return build.ContactView(
        contact_id=state.contact_id,
        kind=ContactKind(state.kind),
        started_at=state.started_at,
        minutes=state.minutes,
        subject_reference=f"Patient/{state.ehr_patient_id}",
        hospital_stay_reference=f"Encounter/{state.ehr_encounter_id}",
        practitioner_reference=practitioner_reference,
        peer_id=state.peer_id,
        peer_name=state.peer_name,
        status=state.status,
    )


async def _upsert(
    target: tuple[EhrClient, WriteMode], resource: dict[str, Any], identifier: str, *, mutable: bool
) -> tuple[str, str | None]:
    """Write the resource once; answers its reference at the EHR and a note if duplicates were resolved."""
    ehr, mode = target
    placed = await ehr.place(resource, identifier, mode=mode, mutable=mutable)
    return placed.reference, placed.note


def _join(*notes: str | None) -> str | None:
    kept = [n for n in notes if n]
    return "; ".join(kept) if kept else None
