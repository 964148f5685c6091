"""A peer records a contact; it is stored and queued for the EHR in one transaction."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import IntegrityError

from service.app.clock import new_id, utcnow
from service.domain.vocabulary import ContactKind
from service.errors import NotFound
from service.fhir import build
from service.fhir.parse import parse_peer_contact
from service.store import repository
from service.store.db import SessionFactory, transaction
from service.store.jobs import new_job
from service.store.models import Client, Contact, Episode, PeerSupporter

OUTBOX_CONTACT = "contact"


@dataclass(frozen=True)
class RecordedContact:
    encounter: dict[str, Any]
    created: bool


def contact_view(contact: Contact, client_id: str, peer_name: str) -> dict[str, Any]:
    """The contact as the peer's app sees it: Peerway's own references."""
    return build.contact_encounter(
        build.ContactView(
            contact_id=contact.id,
            kind=ContactKind(contact.kind),
            started_at=contact.started_at,
            minutes=contact.minutes,
            subject_reference=f"Patient/{client_id}",
            hospital_stay_reference=f"Encounter/{contact.episode_id}",
            practitioner_reference=f"Practitioner/{contact.peer_id}",
            peer_id=contact.peer_id,
            peer_name=peer_name,
        )
    )


async def record_contact(sessions: SessionFactory, peer_id: str, data: dict[str, Any]) -> RecordedContact:
    """Store a PeerContact for one of the peer's own clients and queue its write-back to the EHR.

    Re-posting a contact with the same identifier (the app's retry) answers the first one, unchanged.
    """
    report = parse_peer_contact(data)
    try:
        async with transaction(sessions) as session:
            peer = await session.get(PeerSupporter, peer_id)
            episode = await repository.episode_of_peer(session, peer_id, report.client_id)
            if episode is None or peer is None:
                raise NotFound(f"Patient/{report.client_id} is not known")
            if report.app_identifier is not None:
                earlier = await repository.contact_by_app_identifier(session, peer_id, report.app_identifier)
                if earlier is not None:
                    return RecordedContact(contact_view(earlier, report.client_id, peer.name), created=False)
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
            )
            session.add(contact)
            client = await session.get(Client, episode.client_id)
            assert client is not None  # episode.client_id is a foreign key
            session.add(new_job(OUTBOX_CONTACT, contact.id, client.site, now))
            return RecordedContact(contact_view(contact, report.client_id, peer.name), created=True)
    except IntegrityError:
        # The same app identifier was posted twice at once: the other request stored it.
        async with sessions() as session:
            assert report.app_identifier is not None
            earlier = await repository.contact_by_app_identifier(session, peer_id, report.app_identifier)
            peer = await session.get(PeerSupporter, peer_id)
            if earlier is None or peer is None:
                raise
            return RecordedContact(contact_view(earlier, report.client_id, peer.name), created=False)


async def read_contact(sessions: SessionFactory, peer_id: str, contact_id: str) -> dict[str, Any]:
    """A peer reads back one of their own contacts."""
    async with sessions() as session:
        contact = await session.get(Contact, contact_id)
        peer = await session.get(PeerSupporter, peer_id)
        if contact is None or peer is None or contact.peer_id != peer_id:
            raise NotFound(f"Encounter/{contact_id} is not known")
        episode = await session.get(Episode, contact.episode_id)
        assert episode is not None
        return contact_view(contact, episode.client_id, peer.name)
