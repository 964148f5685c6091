"""A client's background from the hospital EHR (appointments, goals, safety flags, community supports; diagnosis
and notes only when a permit names them), read by the worker, never inside a request's transaction.

Collect no more than is needed: a category is read only while some consent of the client could release it
(consent/collection.py), and what a consent change leaves unneeded is deleted in that change's transaction.
Read at discharge (a job queued with the discharge) and again by a bounded periodic refresh; a failed read keeps
what was read before, and the summary marks that category stale.
"""

from __future__ import annotations

import json
import logging
import weakref
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from consent import ConsentRecord, DataCategory, unchanged_until
from consent.collection import releasable
from service.app.clock import utcnow
from service.domain.vocabulary import ADMISSION_CANCELLED
from service.errors import BadRequest, InvalidResource, UpstreamError
from service.fhir.background import FETCHED, SOURCES, kept_items, searches
from service.fhir.consent import parse_consent
from service.fhir.ehr_answers import patient_json
from service.store import background as store
from service.store import repository
from service.store.db import SessionFactory, transaction
from service.store.jobs import new_job
from service.store.matching import EpisodeClosure
from service.store.models import Client

IN_COMMUNITY = "in-community"
BACKGROUND = "background"  # the job kind: read a client's background from their site's EHR
PATIENT_CATEGORIES = frozenset({DataCategory.PREFERRED_NAME, DataCategory.CONTACT_DETAILS})
TRACKED = frozenset(FETCHED) | PATIENT_CATEGORIES  # what a read of the client's background covers
_TRACKED_VALUES = frozenset(c.value for c in TRACKED)
REFRESH_AFTER = timedelta(hours=6)
RETRY_FAILED_AFTER = timedelta(minutes=15)  # a category the EHR failed to answer is asked again sooner
REFRESH_BATCH = 20  # clients queued per periodic check, so a big program never floods the EHR

# What a hostile EHR answer can make the reducers raise: the category's read fails, the others go on.
UNREADABLE = (TypeError, ValueError, KeyError, AttributeError, RecursionError)

log = logging.getLogger(__name__)


class Reader(Protocol):
    """The site's EHR, as far as reading background goes (service/ehr/client.py EhrClient)."""

    async def search(self, resource_type: str, params: Any) -> list[dict[str, Any]]: ...

    async def read(self, resource_type: str, resource_id: str) -> dict[str, Any] | None: ...


@dataclass(frozen=True)
class FetchReport:
    read: tuple[DataCategory, ...] = ()
    failed: tuple[DataCategory, ...] = ()
    forgotten: tuple[DataCategory, ...] = ()
    searches: int = 0


def _records(docs: Any) -> list[ConsentRecord]:
    return [parse_consent(json.loads(doc.resource_json)) for doc in docs]


async def collectable(session: AsyncSession, client_id: str, now: datetime) -> frozenset[DataCategory]:
    """The EHR-sourced categories (and the Patient's own, read again) some current consent could release now."""
    return (await _collectable_until(session, client_id, now))[0]


async def _collectable_until(
    session: AsyncSession, client_id: str, now: datetime
) -> tuple[frozenset[DataCategory], datetime | None]:
    """collectable, and the moment from which the clock alone may change it (None: never)."""
    records = _records(await repository.consents_of(session, client_id))
    return releasable(records, f"Patient/{client_id}", now, SOURCES) & TRACKED, unchanged_until(records, now)


def queue_fetch(session: AsyncSession, client: Client, now: datetime) -> None:
    """A job reading the client's background, in the caller's transaction."""
    session.add(new_job(BACKGROUND, client.id, client.site, now))


async def consent_changed(session: AsyncSession, client: Client, now: datetime) -> None:
    """In the transaction of a consent change: forget the categories no consent could release any more; queue a
    read when a category became releasable that was never read, for a client in the community (on the ward, the
    discharge queues it)."""
    state = await store.review_state(session, client.id, BACKGROUND)
    if state is not None:
        await _review(session, client.id, state, now)


def _held(state: store.ReviewState) -> set[DataCategory]:
    """The EHR-sourced categories Peerway holds (items or a fetch state) for the client; not the client's own
    answers, which stay until replaced."""
    return {DataCategory(c) for c in state.fetched} | {
        DataCategory(c) for c, own_answer in state.items if c in _TRACKED_VALUES and not own_answer
    }


def _program_state(state: store.ReviewState) -> tuple[bool, bool]:
    """(ended, in the community) of the client's current episode (the newest whose admission was not cancelled,
    the larger id of two created at one instant, as repository.current_episode finds it). Ended: the program has
    closed it, so no peer works with the client any more; reading the EHR for them, or keeping what was read,
    serves no one."""
    closed = dict(state.closures)
    kept = [(created, episode_id, where) for episode_id, where, created in state.episodes]
    current = max((e for e in kept if closed.get(e[1]) != ADMISSION_CANCELLED), default=None)
    if current is None:
        return False, False
    ended = current[1] in closed
    return ended, not ended and current[2] == IN_COMMUNITY


@dataclass(frozen=True)
class _Reviewed:
    """A client's review that changed nothing: the state it decided on (all it read but the Consents' text), when,
    and until when the clock alone could not change its outcome (None: never)."""

    state: store.ReviewState
    at: datetime
    until: datetime | None

    def holds(self, state: store.ReviewState, now: datetime) -> bool:
        return self.state == state and self.at <= now and (self.until is None or now < self.until)


# Per session factory (one database), each client's last review that changed nothing; ids and categories only.
_reviewed: weakref.WeakKeyDictionary[SessionFactory, dict[str, _Reviewed]] = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class _Outcome:
    forgot: bool  # deleted something no consent could release any more
    queued: bool  # queued a first read of what one now could
    until: datetime | None  # when the clock alone may change the outcome (None: never)
    settled: bool = True  # decided on `state` alone: a later review of the same state decides the same


async def _review(session: AsyncSession, client_id: str, state: store.ReviewState, now: datetime) -> _Outcome:
    """Forget what no consent could release at `now` (everything, once the program has ended the client's
    episode); queue a first read of what one now could, for a client in the community. Decided on `state` (what
    is held, the episodes, a queued read) and the client's Consents as they are now: a Consent changed since the
    state was read has a newer version, so the state is never seen again and the next sweep reviews anew."""
    ended, in_community = _program_state(state)
    wanted, until = (frozenset(), None) if ended else await _collectable_until(session, client_id, now)
    held = _held(state)
    forgotten = held - wanted
    await store.forget(session, client_id, [c.value for c in forgotten])
    if not in_community or not wanted - held or state.queued:
        return _Outcome(bool(forgotten), False, until)
    if await store.fetch_queued(session, BACKGROUND, client_id):
        # Queued by someone else since the state was read: nothing to add, but not what `state` says, so not to
        # be remembered (that read may end without reading, and the state be as it was).
        return _Outcome(bool(forgotten), False, until, settled=False)
    session.add(new_job(BACKGROUND, client_id, state.site, now))
    return _Outcome(bool(forgotten), True, until)


async def review_consents(sessions: SessionFactory, now: datetime | None = None) -> tuple[int, int]:
    """The periodic check for consents that changed by the clock alone: a period that ended (or a nested
    provision's) leaves data no consent can release, which is deleted whatever the client's episode (readmitted
    clients too); a consent that starts later gets its first read once it is in force. What is held of a client
    whose episode the program has ended is deleted (so they leave this check too). Answers (clients whose data
    was purged, clients queued for a first read).

    A client is reviewed again only when something the review decides on has changed since their last review that
    changed nothing (a Consent's version, an episode, a closure, what is held, a queued read: store.ReviewState),
    or a Consent period has begun or ended since: otherwise the review would decide the same. Every review took
    a transaction and parsed the client's Consents: 4-5 s of CPU a sweep with 1,000 clients in the community, in
    every worker, every minute; the states of all of them are read in seven statements, and a review decides on
    the very state it is remembered with.
    """
    now = now or utcnow()
    purged = started = 0
    async with sessions() as session:
        states = await store.review_states(session, BACKGROUND)
    known = _reviewed.setdefault(sessions, {})
    for gone in known.keys() - states.keys():
        del known[gone]
    for client_id, state in sorted(states.items()):
        last = known.get(client_id)
        if last is not None and last.holds(state, now):
            continue
        # Each its own transaction: the write turn is never held for the whole sweep. What changed since the
        # state was read makes the next sweep's state differ, and that sweep reviews the client again.
        async with transaction(sessions) as session:
            outcome = await _review(session, client_id, state, now)
        purged, started = purged + outcome.forgot, started + outcome.queued
        if outcome.forgot or outcome.queued or not outcome.settled:
            known.pop(client_id, None)  # it changed what it read, or read what the state did not say: anew
        else:
            known[client_id] = _Reviewed(state, now, outcome.until)
    return purged, started


async def fetch_background(
    sessions: SessionFactory, ehr: Reader, client_id: str, now: datetime | None = None
) -> FetchReport:
    """Read every collectable category of the client from the EHR and keep what a peer may need.

    Three steps, the EHR read between two short transactions. A category whose read fails keeps its items
    (stale) and says so; the others are replaced. Consents are read again before writing: a category withdrawn
    meanwhile is forgotten, not written.
    """
    now = now or utcnow()
    async with transaction(sessions) as session:
        client = await session.get(Client, client_id)
        episode = await repository.current_episode(session, client_id) if client is not None else None
        if client is None or episode is None or await session.get(EpisodeClosure, episode.id) is not None:
            return FetchReport()  # no one to read for: gone, or the program has ended the episode
        wanted = await collectable(session, client_id, now)
        ehr_patient_id = client.ehr_patient_id
        stay = json.loads(episode.encounter_json)
    hospital = (stay.get("serviceProvider") or {}).get("reference") if isinstance(stay, dict) else None
    plan = searches(sorted(wanted & frozenset(FETCHED)), ehr_patient_id, now)
    found: dict[DataCategory, list[dict[str, Any]]] = {c: [] for c in wanted}
    failed: dict[DataCategory, str] = {}
    patient: dict[str, Any] | None = None
    if wanted & PATIENT_CATEGORIES:
        try:
            patient = await _current_patient(ehr, ehr_patient_id)
        except (UpstreamError, InvalidResource, BadRequest) as exc:
            failed |= dict.fromkeys(wanted & PATIENT_CATEGORIES, exc.diagnostics)
    for search in plan:
        if search.category in failed:
            continue
        try:
            found[search.category] += await ehr.search(search.resource_type, search.params)
        except UpstreamError as exc:
            failed[search.category] = exc.diagnostics
            log.warning("background read failed: %s (%s)", search.resource_type, exc.http_status)
        except UNREADABLE as exc:  # an answer the client could not make sense of fails its category only
            failed[search.category] = f"the EHR's answer could not be read ({type(exc).__name__})"
            log.warning("background read failed: %s (%s)", search.resource_type, type(exc).__name__)
    async with transaction(sessions) as session:
        client = await session.get(Client, client_id)
        if client is None:
            return FetchReport()
        still = await collectable(session, client_id, now)
        if patient is not None:
            client.patient_json = json.dumps(patient, separators=(",", ":"))  # preferred name, pronouns, contact
            client.updated_at = now
        for category in sorted(wanted):
            if category not in still:
                continue
            if category in failed:
                await store.record_failure(session, client_id, category.value, failed[category], now)
                continue
            try:
                kept = kept_items(
                    category, found.get(category, []), client_id, now, patient=ehr_patient_id, hospital=hospital
                )
            except UNREADABLE as exc:  # a hostile answer fails its own category, never the job
                log.warning("background answer unreadable: %s (%s)", category.value, type(exc).__name__)
                failed[category] = f"the EHR's answer could not be read ({type(exc).__name__})"
                await store.record_failure(session, client_id, category.value, failed[category], now)
                continue
            items = [
                store.BackgroundItem(
                    id=k.item_id,
                    client_id=client_id,
                    category=category.value,
                    source=k.source,
                    resource_json=json.dumps(k.resource, separators=(",", ":")),
                    labels_json=json.dumps([list(label) for label in k.labels]),
                    data_date=k.data_date,
                    fetched_at=now,
                )
                for k in kept
            ]
            await store.replace_category(session, client_id, category.value, items, now)
        held = {DataCategory(f.category) for f in await store.fetches_of(session, client_id)}
        gone = sorted(held - still)
        await store.forget(session, client_id, [c.value for c in gone])
    return FetchReport(
        read=tuple(c for c in sorted(wanted) if c in still and c not in failed),
        failed=tuple(sorted(failed)),
        forgotten=tuple(gone),
        searches=len(plan),
    )


async def _current_patient(ehr: Reader, ehr_patient_id: str) -> dict[str, Any] | None:
    """The EHR's Patient as it is now (a usual name, pronouns, contact details changed since the discharge); None
    when the EHR no longer has it (the notification's copy stays). An answer that is not this Patient (an
    OperationOutcome with 200, another id) is a failed read, not a Patient gone."""
    found = await ehr.read("Patient", ehr_patient_id)
    if found is None:
        return None
    if not isinstance(found, dict) or found.get("resourceType") != "Patient" or found.get("id") != ehr_patient_id:
        raise UpstreamError("the EHR answered a read of the client's Patient with something else")
    patient_json(found)  # the summary builds on it: an invalid Patient is a failed read (4xx raised), not stored
    return found


async def queue_refreshes(sessions: SessionFactory, now: datetime | None = None) -> int:
    """The periodic re-read: queue a fetch for at most REFRESH_BATCH clients in the community whose background is
    older than REFRESH_AFTER at `now` (and not already queued), after review_consents. Answers how many were
    queued (first reads of consents that came into force included)."""
    now = now or utcnow()
    _, queued = await review_consents(sessions, now)
    async with transaction(sessions) as session:
        for client_id, site in await store.due_for_refresh(
            session, now - REFRESH_AFTER, now - RETRY_FAILED_AFTER, REFRESH_BATCH
        ):
            if await store.fetch_queued(session, BACKGROUND, client_id):
                continue
            session.add(new_job(BACKGROUND, client_id, site, utcnow()))  # due at once
            queued += 1
    return queued
