"""Coordinators record a client's sharing choices as FHIR Consents; the engine reads them on every request.

Consents are per client and a client is per site (the EHR that sent them): a writer or reader acting for a site
reaches only that site's clients' Consents, so a Consent recorded at one hospital never covers another's data.
Every change stores a new version; decisions always read the current rows, so a withdrawal or a new deny
applies to the very next request. Parsed ConsentRecords are cached by a SHA-256 of the stored JSON (its meta
holds the id and version): a changed Consent is different text and is never served from the cache, and the same
id and version in another database (a test's, a restored copy) cannot be mistaken for it. The cache keeps the
digest, not the text, so a large Consent (an attached form) is not held in memory once per version.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qsl

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.exc import StaleDataError

from consent import ConsentRecord
from service.app import background
from service.app import search as searching
from service.app.clock import new_id, utcnow
from service.errors import BadRequest, Conflict, InvalidResource, NotFound, PreconditionFailed, changed_meanwhile
from service.fhir.build import stamped_consent, to_json
from service.fhir.consent import parse_consent, subject_element
from service.fhir.consent_capture import check_for_capture, check_json_types_of_consent
from service.fhir.ids import MAX_IDENTIFIER_LENGTH
from service.fhir.search import STATUS_SYSTEMS, SearchRequest, Token
from service.store import repository, searches
from service.store.db import SessionFactory, transaction
from service.store.models import Client, ConsentDocument

_CACHE_SIZE = 4096
_records: OrderedDict[bytes, ConsentRecord] = OrderedDict()


def _key(site: str, consent_id: str) -> str:
    """A Consent id is its site's own (ConsentDocument)."""
    return f"{site}|{consent_id}"


def consent_record(resource_json: str) -> ConsentRecord:
    """The engine's view of a stored Consent (validated when it was stored), from its row's JSON."""
    digest = hashlib.sha256(resource_json.encode()).digest()
    record = _records.get(digest)
    if record is None:
        record = parse_consent(json.loads(resource_json))
        _records[digest] = record
        if len(_records) > _CACHE_SIZE:
            _records.popitem(last=False)
    else:
        _records.move_to_end(digest)
    return record


async def _client_for(session: AsyncSession, site: str, data: dict[str, Any]) -> Client:
    """Consent.patient (R4) or Consent.subject (R5) names the site's client by Peerway's id
    (Patient/<client id>) or by the site's EHR Patient id; another site's client is refused exactly like an
    unknown one. The stored copy names the client by Peerway's id (stamped_consent)."""
    name = subject_element(data)
    element = f"Consent.{name}"
    named = data.get(name)
    reference = named.get("reference") if isinstance(named, dict) else None
    if not isinstance(reference, str) or not reference.startswith("Patient/"):
        raise InvalidResource(f"{element} must be a Patient/<id> reference", element)
    client = await repository.client_named(session, site, reference)
    if client is None:
        raise InvalidResource(f"{element} {reference} is not a client of the program", element)
    return client


async def create_consent(
    sessions: SessionFactory, site: str, data: dict[str, Any], if_none_exist: str | None = None
) -> tuple[dict[str, Any], bool]:
    """Validate and store a new Consent under a new id; answers (the stored resource, created).

    With If-None-Exist (`identifier=<token>`: system|value, a value alone, |value or system|), a Consent of the
    site already carrying a matching identifier (any of its identifiers) is answered instead, unchanged (created
    False); two of them are a 412."""
    if if_none_exist is not None:
        identifier = _if_none_exist_identifier(if_none_exist)
        token = Token.parse(identifier)
        async with sessions() as session:
            matches = await searches.consents_with_identifier(session, site, (token.system, token.code))
        if len(matches) > 1:
            raise PreconditionFailed(f"If-None-Exist matches several Consents ({identifier})", "If-None-Exist")
        if matches:
            existing: dict[str, Any] = json.loads(matches[0].resource_json)
            return existing, False
    return await _write(sessions, site, new_id(), data, None, creating=True)


def _if_none_exist_identifier(criteria: str) -> str:
    pairs = parse_qsl(criteria, keep_blank_values=True)
    if len(pairs) != 1 or pairs[0][0] != "identifier" or pairs[0][1].strip("|") == "" or "\x00" in pairs[0][1]:
        raise BadRequest(
            "If-None-Exist: Consents are matched by identifier only (system|value, a value, |value or system|)",
            "If-None-Exist",
        )
    if len(pairs[0][1]) > MAX_IDENTIFIER_LENGTH:
        raise BadRequest(
            f"If-None-Exist: an identifier has at most {MAX_IDENTIFIER_LENGTH} characters", "If-None-Exist"
        )
    return pairs[0][1]


def identifier_pairs(data: dict[str, Any]) -> list[tuple[str, str]]:
    """Every Consent.identifier with a value, as (system or "", value): what token searches and If-None-Exist
    match. One longer than MAX_IDENTIFIER_LENGTH as system|value is refused: cut, it would never match again."""
    found = data.get("identifier")
    pairs = []
    for n, item in enumerate(found if isinstance(found, list) else [found]):
        if not isinstance(item, dict) or not isinstance(item.get("value"), str) or not item["value"]:
            continue
        system = item["system"] if isinstance(item.get("system"), str) else ""
        if len(system) + 1 + len(item["value"]) > MAX_IDENTIFIER_LENGTH:
            raise InvalidResource(
                f"Consent.identifier: system|value has at most {MAX_IDENTIFIER_LENGTH} characters",
                f"Consent.identifier[{n}]",
            )
        pairs.append((system, item["value"]))
    return pairs


def identifier_key(data: dict[str, Any]) -> str | None:
    """The first Consent.identifier as system|value (R4 has a list, R5 too; a bare object is read as one)."""
    identifiers = data.get("identifier")
    first = identifiers[0] if isinstance(identifiers, list) and identifiers else identifiers
    if isinstance(first, dict) and isinstance(first.get("system"), str) and isinstance(first.get("value"), str):
        key = f"{first['system']}|{first['value']}"
        if len(key) > MAX_IDENTIFIER_LENGTH:  # cut, it would never match again: If-None-Exist would duplicate
            raise InvalidResource(
                f"Consent.identifier: system|value has at most {MAX_IDENTIFIER_LENGTH} characters", "Consent.identifier"
            )
        return key
    return None


async def replace_consent(
    sessions: SessionFactory, site: str, consent_id: str, data: dict[str, Any], expected_version: int | None = None
) -> tuple[dict[str, Any], bool]:
    """PUT: replace (e.g. withdraw with status inactive) or create with the given id. Returns (stored, created).

    With If-Match, the replace happens only while `expected_version` is still the current one (else 412)."""
    if data.get("id") != consent_id:  # R4 http.html, update: no id, or another one, is a 400
        raise BadRequest("Consent.id must be the id in the URL", "Consent.id")
    return await _write(sessions, site, consent_id, data, expected_version, creating=False)


async def _write(
    sessions: SessionFactory,
    site: str,
    consent_id: str,
    data: dict[str, Any],
    expected_version: int | None,
    *,
    creating: bool,
) -> tuple[dict[str, Any], bool]:
    check_json_types_of_consent(data)  # FHIR JSON's primitive types first: no value is echoed in the refusal
    parse_consent(data)  # refuses what the engine could not read, with the element named
    check_for_capture(data)  # and what it would read but not honour as meant (unknown codes, non-R5 elements)
    now = utcnow()
    try:
        async with transaction(sessions) as session:
            client = await _client_for(session, site, data)
            doc = await session.get(ConsentDocument, _key(site, consent_id), with_for_update=True)
            if expected_version is not None and (doc is None or doc.version_id != expected_version):
                current = "it does not exist" if doc is None else f"the current version is {doc.version_id}"
                raise PreconditionFailed(
                    f"If-Match names version {expected_version} of Consent/{consent_id}, but {current}: read it"
                    " again and re-apply the change",
                    "If-Match",
                )
            if doc is not None and doc.client_id != client.id:
                raise InvalidResource("a Consent cannot move to another client", f"Consent.{subject_element(data)}")
            created = doc is None
            if doc is None:
                doc = ConsentDocument(id=_key(site, consent_id), client_id=client.id, version_id=0, created_at=now)
                session.add(doc)
            stored = stamped_consent(data, consent_id, doc.version_id + 1, f"Patient/{client.id}", now)
            doc.status = str(stored.get("status"))
            doc.version_id += 1
            doc.resource_json = to_json(stored)
            doc.updated_at = now
            doc.identifier = identifier_key(stored)
            await session.flush()
            await searches.keep_consent_identifiers(session, doc.id, identifier_pairs(stored))
            await background.consent_changed(session, client, now)
    except IntegrityError:
        if creating:  # a new random id cannot collide: this is not a race on the id
            raise
        raise Conflict(f"Consent/{consent_id} was created by another request at the same time; retry") from None
    except StaleDataError:
        raise changed_meanwhile(f"Consent/{consent_id}", expected_version) from None
    return stored, created


async def read_consent(
    sessions: SessionFactory, site: str, consent_id: str, version: int | None = None
) -> dict[str, Any]:
    """A Consent of one of the site's clients (another site's is not known, like a missing one).

    Only the current version is kept: `version` (vread) names it, or the answer is 404 saying so."""
    async with sessions() as session:
        doc = await session.get(ConsentDocument, _key(site, consent_id))
        if doc is None or await repository.client_at(session, site, doc.client_id) is None:
            raise NotFound(f"Consent/{consent_id} is not known")
        if version is not None and version != doc.version_id:
            raise NotFound(
                f"Consent/{consent_id}/_history/{version}: only the current version ({doc.version_id}) is kept",
                "version",
            )
        result: dict[str, Any] = json.loads(doc.resource_json)
        return result


async def search_consents(sessions: SessionFactory, site: str, search: SearchRequest) -> searching.Found:
    """One page of the site's Consents (of one client, or by _id); an unknown patient simply has none."""
    patient = search.one("patient")
    ids = search.tokens("_id")
    if patient is None and not ids:
        raise BadRequest("a Consent search names the client: patient=Patient/<id> (or _id)", "patient")
    async with sessions() as session:
        client_id = None
        if patient is not None:
            client = await repository.client_named(session, site, patient)
            if client is None:
                return searching.empty_if_unmatched(search)
            client_id = client.id
        filters = replace(
            searching.filters(search, ids=[_key(site, i) for i in ids], status_system=STATUS_SYSTEMS["Consent"]),
            identifiers=(),
            identifier_tokens=[(t.system, t.code) for t in map(Token.parse, search.tokens("identifier"))],
        )
        found = await searches.consent_page(session, site, client_id, filters)
        return searching.found(found, lambda doc: json.loads(doc.resource_json))
