"""One person known at several sites, linked by a shared identifier (PEERWAY_LINK_IDENTIFIER_SYSTEM).

Identifiers from different EHRs never collide: a client is one Patient id at one site, and the same Patient id
at two sites is two clients. Only a deployment that names a shared identifier system (a provincial health
number) links records, and even then a site's coordinator sees another site's record of the person only where
the consent recorded at that other site allows it: a permit for the category admission-discharge, action
disclose (or any), purpose COC, to the actor `Organization/<asking site id>` (role IRCP). Each answer is an
AuditEvent on the other site's client (denials too), so that site's accounting shows who asked.

Identifier values are kept as SHA-256 digests only; the Patient snapshot itself is stored as received.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from consent import DataCategory
from consent.categories import ACTION_DISCLOSE
from service.app.clock import utcnow
from service.app.disclosures import record_disclosure
from service.app.sharing import Holdings, decide
from service.errors import NotFound
from service.fhir.parse import patient_identifiers
from service.store import linking as store
from service.store import repository
from service.store.db import SessionFactory, transaction
from service.store.models import Client

LINK_CATEGORY = DataCategory.ADMISSION_DISCHARGE


@dataclass(frozen=True)
class LinkedRecord:
    site: str
    client_id: str
    state: str | None
    admitted_at: datetime | None
    discharged_at: datetime | None


async def record_identifiers(session: AsyncSession, client: Client) -> None:
    """Keep the digests of the client's identifiers in step with its Patient snapshot."""
    await store.replace_identifiers(session, client.id, identifier_digests(client.patient_json))


def identifier_digests(patient_json: str) -> list[tuple[str, str]]:
    """(system, digest of value) of each identifier of a Patient snapshot that is kept (a system of at most 300
    characters), each once."""
    digests = {(system, _digest(value)) for system, value in patient_identifiers(patient_json)}
    return sorted((s, d) for s, d in digests if len(s) <= 300)


def _digest(value: str) -> str:
    return hashlib.sha256(value.strip().encode()).hexdigest()


def organization_of(site: str) -> str:
    """How a Consent names a site's coordinators as recipients."""
    return f"Organization/{site}"


async def linked_records(
    sessions: SessionFactory, system: str | None, site: str, client_id: str
) -> Sequence[LinkedRecord]:
    """The person's records at other sites that their consent there lets this site's coordinators see."""
    now = utcnow()
    async with transaction(sessions) as session:
        client = await session.get(Client, client_id)
        if client is None or client.site != site:
            raise NotFound(f"no client {client_id}")
        if system is None:
            return []
        digests = await store.digest_of(session, client.id, system)
        shown: list[LinkedRecord] = []
        for other in await store.clients_sharing(session, system, digests, other_than=site):
            episode = await repository.current_episode(session, other.id)
            if episode is None:
                continue
            holdings = Holdings.of(other, episode)
            recipient = organization_of(site)
            decision = await decide(
                session, holdings, recipient, assigned=False, categories=[LINK_CATEGORY], at=now, action=ACTION_DISCLOSE
            )
            record_disclosure(
                session, other.id, recipient, f"coordinators of site {site}", decision, [LINK_CATEGORY], now
            )
            if decision.is_permitted(holdings.item(LINK_CATEGORY)):
                shown.append(
                    LinkedRecord(
                        site=other.site,
                        client_id=other.id,
                        state=episode.state,
                        admitted_at=episode.admitted_at,
                        discharged_at=episode.discharged_at,
                    )
                )
        return shown
