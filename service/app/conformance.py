"""Searching Peerway's conformance resources (fhir_profiles/data): the same parameters, pages and cursors as every
other FHIR search, over the few resources kept in memory."""

from __future__ import annotations

from dataclasses import replace

from service.app.search import Found, in_memory
from service.errors import BadRequest
from service.fhir import canonical
from service.fhir.search import SearchRequest


def search(search: SearchRequest) -> Found:
    """One page of the served resources of the searched type matching every criterion, ordered by
    (lastUpdated, id); the total is always given, counting a few files being cheap."""
    if search.elements:
        raise BadRequest("_elements is not served for conformance resources: read the whole resource", "_elements")
    criteria = {name: search.tokens(name) for name in search.criteria}
    page, found = in_memory(canonical.keys(search.resource_type, criteria), search)
    if search.summary_count:
        return found
    return replace(found, resources=[canonical.parsed(search.resource_type, id) for _, id in page])
