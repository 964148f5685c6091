"""A peer records, corrects and cancels contacts; each change is stored and queued for the EHR in one
transaction (the job carries the contact's id; the worker writes its state as it then is)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import parse_qsl

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.exc import StaleDataError

import fhir_profiles
from service.app import refusals
from service.app import search as searching
from service.app.clock import new_id, utcnow
from service.domain.stay import ContactReport
from service.domain.vocabulary import ContactKind
from service.errors import BadRequest, Conflict, InvalidResource, NotFound, PreconditionFailed, changed_meanwhile
from service.fhir import build
from service.fhir.contact_changes import Change, contact_changes, matched_changes
from service.fhir.ids import MAX_IDENTIFIER_LENGTH
from service.fhir.parse import parse_peer_contact
from service.fhir.search import STATUS_SYSTEMS, SearchRequest
from service.store import repository, searches
from service.store.db import SessionFactory, transaction
from service.store.jobs import new_job
from service.store.models import Client, Contact, Episode, PeerSupporter

OUTBOX_CONTACT = "contact"
STATUSES = ("finished", "entered-in-error")  # a contact happened, or was recorded by mistake (cancelled)
_OWN_IDENTIFIER = f"{fhir_profiles.CONTACT_IDENTIFIER_SYSTEM}|"


@dataclass(frozen=True)
class RecordedContact:
    encounter: dict[str, Any]
    created: bool
    changes: tuple[Change, ...] = ()  # what of the app's Encounter was not kept as sent, for its answer
    matched: bool = False  # a retry or If-None-Exist answered with a contact recorded earlier: nothing written
    differs: bool = False  # ... whose kind, period or length differ from what this request sent


def contact_view(contact: Contact, client_id: str, peer_name: str) -> dict[str, Any]:
    """The contact as the peer's app sees it: Peerway's own references, its version and last change."""
    encounter = build.contact_encounter(
        build.ContactView(
            contact_id=contact.id,
            kind=ContactKind(contact.kind),
            started_at=contact.started_at,
            minutes=contact.minutes,
            subject_reference=f"Patient/{client_id}",
            hospital_stay_reference=None,  # the stay is the EHR's: Peerway serves no Encounter an app could follow
            practitioner_reference=f"Practitioner/{contact.peer_id}",
            peer_id=contact.peer_id,
            peer_name=peer_name,
            status=contact.status,
        )
    )
    return build.versioned(encounter, contact.version_id, contact.updated_at)


def _identifier_criteria(criteria: str) -> str:
    pairs = parse_qsl(criteria, keep_blank_values=True)
    if len(pairs) != 1 or pairs[0][0] != "identifier" or "|" not in pairs[0][1] or "\x00" in pairs[0][1]:
        raise BadRequest("If-None-Exist: contacts are matched by identifier=<system>|<value> only", "If-None-Exist")
    if len(pairs[0][1]) > MAX_IDENTIFIER_LENGTH:
        raise BadRequest(
            f"If-None-Exist: an identifier has at most {MAX_IDENTIFIER_LENGTH} characters", "If-None-Exist"
        )
    return pairs[0][1]


async def _by_identifier(session: AsyncSession, peer_id: str, identifier: str) -> Contact | None:
    """The peer's contact with the app's identifier, or with Peerway's own (contact-id system)."""
    if identifier.startswith(_OWN_IDENTIFIER):
        contact = await session.get(Contact, identifier.removeprefix(_OWN_IDENTIFIER))
        return contact if contact is not None and contact.peer_id == peer_id else None
    return await repository.contact_by_app_identifier(session, peer_id, identifier)


async def record_contact(
    sessions: SessionFactory, peer_id: str, data: dict[str, Any], if_none_exist: str | None = None
) -> RecordedContact:
    """Store a PeerContact for one of the peer's own clients and queue its write-back to the EHR; the answer
    says what of the app's Encounter was not kept as sent (participants, class, identifier, other elements).

    Re-posting a contact with the same identifier (the app's retry), or If-None-Exist naming an identifier of
    one of the peer's contacts, answers that contact, unchanged.
    """
    recorded = await _record_contact(sessions, peer_id, data, if_none_exist)
    changes = contact_changes(data, recorded.encounter)
    if recorded.matched:
        reference = f"Encounter/{recorded.encounter['id']}"
        changes = matched_changes(reference, differs=recorded.differs) + changes
    return replace(recorded, changes=changes)


async def _record_contact(
    sessions: SessionFactory, peer_id: str, data: dict[str, Any], if_none_exist: str | None
) -> RecordedContact:
    report = parse_peer_contact(data)
    wanted = _identifier_criteria(if_none_exist) if if_none_exist is not None else None
    try:
        async with transaction(sessions) as session:
            peer = await session.get(PeerSupporter, peer_id)
            episode = await repository.episode_of_peer(session, peer_id, report.client_id)
            if episode is None or peer is None:
                raise refusals.not_theirs(peer_id, "Patient", report.client_id)
            for identifier in (wanted, report.app_identifier):
                earlier = await _by_identifier(session, peer_id, identifier) if identifier else None
                if earlier is not None:
                    return _matched(await _view(session, earlier, peer.name), earlier, report)
            now = utcnow()
            contact = Contact(
                id=new_id(),
                episode_id=episode.id,
                peer_id=peer_id,
                kind=report.kind.value,
                started_at=report.started_at,
                minutes=report.minutes,
                app_identifier=report.app_identifier,
                delivered_at=None,
                created_at=now,
                status="finished",
                version_id=1,
                updated_at=now,
            )
            session.add(contact)
            client = await session.get(Client, episode.client_id)
            assert client is not None  # episode.client_id is a foreign key
            session.add(new_job(OUTBOX_CONTACT, contact.id, client.site, now))
            return RecordedContact(contact_view(contact, report.client_id, peer.name), created=True)
    except IntegrityError:
        # The same app identifier was posted twice at once: the other request stored it.
        if report.app_identifier is None:  # something else changed under us (the episode ended): say so, once
            raise Conflict("the client's episode changed while the contact was recorded: retry") from None
        async with sessions() as session:
            earlier = await repository.contact_by_app_identifier(session, peer_id, report.app_identifier)
            peer = await session.get(PeerSupporter, peer_id)
            if earlier is None or peer is None:
                raise
            return _matched(await _view(session, earlier, peer.name), earlier, report)


def _matched(encounter: dict[str, Any], earlier: Contact, report: ContactReport) -> RecordedContact:
    differs = (earlier.kind, earlier.started_at, earlier.minutes) != (
        report.kind.value,
        report.started_at,
        report.minutes,
    )
    return RecordedContact(encounter, created=False, matched=True, differs=differs)


async def update_contact(
    sessions: SessionFactory, peer_id: str, contact_id: str, data: dict[str, Any], expected_version: int | None
) -> RecordedContact:
    """PUT: the peer corrects one of their contacts (kind, time, length) or cancels it with status
    entered-in-error; a cancelled contact stays cancelled. With If-Match, only while that version is current.
    The change is queued for the EHR in the same transaction; the answer says what was not kept as sent."""
    encounter = await _update_contact(sessions, peer_id, contact_id, data, expected_version)
    changes = contact_changes(data, encounter, kept_app_identifier=False)
    return RecordedContact(encounter, created=False, changes=changes)


async def _update_contact(
    sessions: SessionFactory, peer_id: str, contact_id: str, data: dict[str, Any], expected_version: int | None
) -> dict[str, Any]:
    if data.get("id") != contact_id:  # R4 http.html, update: no id, or another one, is a 400
        raise BadRequest("Encounter.id must be the id in the URL", "Encounter.id")
    status = data.get("status")
    if status not in STATUSES:
        raise InvalidResource(f"Encounter.status must be one of {', '.join(STATUSES)}", "Encounter.status")
    report = parse_peer_contact({**data, "status": "finished"})  # the rest is checked as for a new contact
    try:
        async with transaction(sessions) as session:
            contact = await session.get(Contact, contact_id, with_for_update=True)
            peer = await session.get(PeerSupporter, peer_id)
            if contact is None or peer is None or contact.peer_id != peer_id:
                raise refusals.not_theirs(peer_id, "Encounter", contact_id)
            if expected_version is not None and expected_version != contact.version_id:
                raise PreconditionFailed(
                    f"If-Match names version {expected_version} of Encounter/{contact_id}, but the current version is"
                    f" {contact.version_id}: read it again and re-apply the change",
                    "If-Match",
                )
            episode = await session.get(Episode, contact.episode_id)
            assert episode is not None  # a foreign key
            if report.client_id != episode.client_id:
                raise InvalidResource("a contact cannot move to another client", "Encounter.subject")
            if contact.status == "entered-in-error" and status != "entered-in-error":
                raise InvalidResource("a cancelled contact (entered-in-error) cannot be restored", "Encounter.status")
            now = utcnow()
            contact.kind = report.kind.value
            contact.started_at = report.started_at
            contact.minutes = report.minutes
            contact.status = str(status)
            contact.version_id += 1
            contact.updated_at = now
            contact.delivered_at = None
            client = await session.get(Client, episode.client_id)
            assert client is not None
            session.add(new_job(OUTBOX_CONTACT, contact.id, client.site, now))
            return contact_view(contact, episode.client_id, peer.name)
    except StaleDataError:
        raise changed_meanwhile(f"Encounter/{contact_id}", expected_version) from None


async def _view(session: AsyncSession, contact: Contact, peer_name: str) -> dict[str, Any]:
    episode = await session.get(Episode, contact.episode_id)
    assert episode is not None  # a foreign key
    return contact_view(contact, episode.client_id, peer_name)


async def read_contact(
    sessions: SessionFactory, peer_id: str, contact_id: str, version: int | None = None
) -> dict[str, Any]:
    """A peer reads back one of their own contacts (only its current version is kept: vread of another 404s)."""
    async with sessions() as session:
        contact = await session.get(Contact, contact_id)
        peer = await session.get(PeerSupporter, peer_id)
        if contact is None or peer is None or contact.peer_id != peer_id:
            raise refusals.not_theirs(peer_id, "Encounter", contact_id)
        if version is not None and version != contact.version_id:
            raise NotFound(
                f"Encounter/{contact_id}/_history/{version}: only the current version ({contact.version_id}) is kept",
                "version",
            )
        return await _view(session, contact, peer.name)


async def search_contacts(sessions: SessionFactory, peer_id: str, search: SearchRequest) -> searching.Found:
    """One page of the peer's own contacts (with one client when `patient` is given). Another peer's client, or
    an unknown one, gives an empty page exactly alike: nothing says the client exists.

    `identifier` matches the app's identifier or Peerway's own (the contact-id system, i.e. the id); a value
    of each kind in one search must both hold (served as AND, not OR: a limit, not met by any known app)."""
    given = search.tokens("identifier")
    own = [i.removeprefix(_OWN_IDENTIFIER) for i in given if i.startswith(_OWN_IDENTIFIER)]
    ids = list(search.tokens("_id"))
    if own:  # an identifier of ours names the id; with _id too, both must hold
        ids = [i for i in own if not ids or i in ids] or [""]  # "" is no contact's id: nothing matches
    apps = [i for i in given if not i.startswith(_OWN_IDENTIFIER)]
    filters = replace(searching.filters(search, ids=ids, status_system=STATUS_SYSTEMS["Encounter"]), identifiers=apps)
    patient = search.one("patient")
    async with sessions() as session:
        peer = await session.get(PeerSupporter, peer_id)
        if peer is None:
            return searching.empty_if_unmatched(search)
        client_id = patient.removeprefix("Patient/") if patient is not None else None
        page = await searches.contact_page(session, peer_id, client_id, filters)
        clients = await searches.episode_clients(session, {c.episode_id for c in page.rows})
        return searching.found(page, lambda c: contact_view(c, clients[c.episode_id], peer.name))
