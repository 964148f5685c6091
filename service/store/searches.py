"""The FHIR searches' queries: each filters by the caller's scope in SQL, then pages by (last updated, id).

Consents: a site's clients' only. Contacts: the calling peer's own only (a contact of another peer's, or of a
client the peer does not have, is simply not there). Audit records: a site's client's.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, delete, exists, insert, or_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from service.store.models import AuditRecord, Client, ConsentDocument, ConsentIdentifier, Contact, Episode
from service.store.paging import Keyset, Page, page


@dataclass(frozen=True)
class Filters:
    """What the served search parameters ask for; an empty tuple means "any"."""

    ids: Sequence[str] = ()
    statuses: Sequence[str] = ()
    identifiers: Sequence[str] = ()  # system|value, exactly (contacts)
    # (system, value): None is any, a system "" none (Consents, from ConsentIdentifier); any one of them matches
    identifier_tokens: Sequence[tuple[str | None, str | None]] = ()
    since: datetime | None = None
    until: datetime | None = None
    keyset: Keyset = field(default_factory=lambda: Keyset(limit=20))
    count_all: bool = False
    rows_wanted: bool = True


async def _filtered_page(
    session: AsyncSession, query: Select[Any], row: Any, status: Any, identifier: Any, filters: Filters
) -> Page:
    """`query` narrowed by the filters every versioned resource takes (_id, status, identifier, _lastUpdated),
    then one page of it by (updated_at, id)."""
    if filters.ids:
        query = query.where(row.id.in_(filters.ids))
    if filters.statuses:
        query = query.where(status.in_(filters.statuses))
    if filters.identifiers:
        query = query.where(identifier.in_(filters.identifiers))
    query = _window(query, row.updated_at, filters.since, filters.until)
    return await _page(session, query, row.updated_at, row.id, filters)


async def _page(session: AsyncSession, query: Select[Any], updated: Any, key: Any, filters: Filters) -> Page:
    return await page(
        session, query, updated, key, filters.keyset, count_all=filters.count_all, rows_wanted=filters.rows_wanted
    )


def _window(query: Select[Any], column: Any, since: datetime | None, until: datetime | None) -> Select[Any]:
    if since is not None:
        query = query.where(column >= since)
    if until is not None:
        query = query.where(column < until)
    return query


async def consent_page(session: AsyncSession, site: str, client_id: str | None, filters: Filters) -> Page:
    """The site's Consents (of one client, when given)."""
    query = select(ConsentDocument).join(Client, Client.id == ConsentDocument.client_id).where(Client.site == site)
    if client_id is not None:
        query = query.where(ConsentDocument.client_id == client_id)
    if filters.identifier_tokens:
        query = query.where(_carrying(filters.identifier_tokens))
    return await _filtered_page(
        session, query, ConsentDocument, ConsentDocument.status, ConsentDocument.identifier, filters
    )


def _carrying(tokens: Sequence[tuple[str | None, str | None]]) -> ColumnElement[bool]:
    """The Consent has an identifier matching any of the tokens. Grouped by form into at most three IN lists: a
    search may hold thousands of comma-separated values, and as one OR each SQLite refused the expression (too
    deep, past 1,000), which surfaced as a 503."""
    pairs = sorted({(system, value) for system, value in tokens if system is not None and value is not None})
    values = sorted({value for system, value in tokens if system is None and value is not None})
    systems = sorted({system for system, value in tokens if system is not None and value is None})
    matches: list[ColumnElement[bool]] = []
    if pairs:
        matches.append(tuple_(ConsentIdentifier.system, ConsentIdentifier.value).in_(pairs))
    if values:
        matches.append(ConsentIdentifier.value.in_(values))
    if systems:
        matches.append(ConsentIdentifier.system.in_(systems))
    return exists().where(ConsentIdentifier.consent_id == ConsentDocument.id, or_(*matches))


async def consents_with_identifier(
    session: AsyncSession, site: str, token: tuple[str | None, str | None]
) -> Sequence[ConsentDocument]:
    """The site's Consents (at most two: one is the answer, two are too many) carrying an identifier that
    matches the token: what If-None-Exist matches."""
    query = (
        select(ConsentDocument)
        .join(Client, Client.id == ConsentDocument.client_id)
        .where(Client.site == site, _carrying([token]))
        .limit(2)
    )
    return (await session.execute(query)).scalars().all()


async def keep_consent_identifiers(session: AsyncSession, consent_key: str, pairs: Collection[tuple[str, str]]) -> None:
    """The identifiers (system, or "" for none; value) of the Consent's current version, replacing its earlier
    version's, in the transaction that writes it."""
    await session.execute(delete(ConsentIdentifier).where(ConsentIdentifier.consent_id == consent_key))
    if pairs:
        await session.execute(
            insert(ConsentIdentifier),
            [{"consent_id": consent_key, "system": system, "value": value} for system, value in sorted(set(pairs))],
        )


async def contact_page(session: AsyncSession, peer_id: str, client_id: str | None, filters: Filters) -> Page:
    """The peer's own contacts (with one client, when given)."""
    query = select(Contact).where(Contact.peer_id == peer_id)
    if client_id is not None:
        query = query.join(Episode, Episode.id == Contact.episode_id).where(Episode.client_id == client_id)
    return await _filtered_page(session, query, Contact, Contact.status, Contact.app_identifier, filters)


async def audit_page(
    session: AsyncSession, client_id: str, recorded: tuple[datetime | None, datetime | None], filters: Filters
) -> Page:
    """A client's audit records; `recorded` is the `date` window, filters' since/until the _lastUpdated one
    (an AuditEvent never changes: it was last updated when recorded)."""
    query = select(AuditRecord).where(AuditRecord.client_id == client_id)
    query = _window(query, AuditRecord.recorded_at, *recorded)
    query = _window(query, AuditRecord.recorded_at, filters.since, filters.until)
    return await _page(session, query, AuditRecord.recorded_at, AuditRecord.id, filters)


async def episode_clients(session: AsyncSession, episode_ids: Collection[str]) -> dict[str, str]:
    """Episode id -> its client's id, for a page of contacts."""
    if not episode_ids:
        return {}
    result = await session.execute(select(Episode.id, Episode.client_id).where(Episode.id.in_(episode_ids)))
    return {episode_id: client_id for episode_id, client_id in result.all()}
