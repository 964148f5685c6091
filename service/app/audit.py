"""Accounting of disclosures: who saw (or was refused) which of a client's information, and when."""

from __future__ import annotations

import json

from service.app import search as searching
from service.errors import BadRequest
from service.fhir.build import versioned
from service.fhir.search import SearchRequest, date_bounds
from service.store import repository, searches
from service.store.db import SessionFactory


async def search_disclosures(sessions: SessionFactory, site: str, search: SearchRequest) -> searching.Found:
    """One page of the AuditEvents about one of the site's clients (`patient` is required; `date` and
    `_lastUpdated` narrow by when it was recorded). An unknown patient simply has none."""
    patient = search.one("patient")
    if patient is None:
        raise BadRequest("an AuditEvent search names the client: patient=Patient/<id>", "patient")
    recorded = date_bounds(search.criteria.get("date", ()))
    async with sessions() as session:
        client = await repository.client_named(session, site, patient)  # the site's clients only
        if client is None:
            return searching.empty_if_unmatched(search)
        page = await searches.audit_page(session, client.id, recorded, searching.filters(search))
        # An AuditEvent never changes: version 1, last updated when it was recorded.
        return searching.found(page, lambda r: versioned(json.loads(r.resource_json), 1, r.recorded_at))
