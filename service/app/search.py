"""From a FHIR search request to the store's filters, and from a store page to the searchset's cursors."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from service.fhir.search import Cursor, SearchRequest, Token, date_bounds
from service.store.paging import Keyset, Page
from service.store.searches import Filters


@dataclass(frozen=True)
class Found:
    """One page of a search: the resources, the total when counted, and where the next and previous pages start."""

    resources: Sequence[dict[str, Any]]
    total: int | None = None
    next: Cursor | None = None
    previous: Cursor | None = None


NOTHING = Found(resources=(), total=0)


def filters(search: SearchRequest, *, ids: Sequence[str] | None = None, status_system: str | None = None) -> Filters:
    """The store's filters for the served parameters (`ids` when the use case maps _id to stored keys).
    `status_system`: the resource's status code system, which `status=<system>|<code>` may name (another system,
    or none with `|<code>`, matches nothing: statuses always have this one)."""
    since, until = date_bounds(search.criteria.get("_lastUpdated", ()), "_lastUpdated")
    cursor = search.cursor
    keyset = Keyset(
        limit=search.count,
        descending=search.descending,
        after=(cursor.updated, cursor.id) if cursor is not None and cursor.forward else None,
        before=(cursor.updated, cursor.id) if cursor is not None and not cursor.forward else None,
    )
    return Filters(
        ids=search.tokens("_id") if ids is None else ids,
        statuses=_statuses(search.tokens("status"), status_system),
        identifiers=search.tokens("identifier"),
        since=since,
        until=until,
        keyset=keyset,
        count_all=search.total,
        rows_wanted=not search.summary_count,
    )


def found(page: Page, render: Callable[[Any], dict[str, Any]]) -> Found:
    return Found(
        resources=[render(row) for row in page.rows],
        total=page.total,
        next=Cursor(True, *page.last) if page.has_next and page.last is not None else None,
        previous=Cursor(False, *page.first) if page.has_previous and page.first is not None else None,
    )


def empty_if_unmatched(search: SearchRequest) -> Found:
    """No match (an unknown or someone else's client): an empty page that says nothing more."""
    return Found(resources=(), total=0 if search.total or search.cursor is None else None)


def in_memory(
    keys: Sequence[tuple[datetime, str]], search: SearchRequest
) -> tuple[Sequence[tuple[datetime, str]], Found]:
    """The page of `keys` (sorted ascending) the search asks for, with the same cursors as a stored search's
    page: for the few resources Peerway keeps in memory (its conformance resources). Returns the page's keys and a
    Found whose resources the caller fills in."""
    ordered = list(reversed(keys)) if search.descending else list(keys)
    cursor = search.cursor
    if cursor is None:
        start, stop = 0, search.count
    else:
        at = (cursor.updated, cursor.id)
        before = sum(1 for key in ordered if (key > at if search.descending else key < at))
        if cursor.forward:
            start = before + (1 if before < len(ordered) and ordered[before] == at else 0)
            stop = start + search.count
        else:
            start, stop = max(0, before - search.count), before
    page = ordered[start:stop]
    return page, Found(
        resources=(),
        total=len(ordered),
        next=Cursor(True, *page[-1]) if page and stop < len(ordered) else None,
        previous=Cursor(False, *page[0]) if page and start > 0 else None,
    )


NO_STATUS = "(none)"  # a status no resource has: what a token naming another code system asks for


def _statuses(tokens: Sequence[str], system: str | None) -> Sequence[str]:
    """The status codes the tokens ask for (any of them); () for any status (`<system>|` of the right system)."""
    codes = []
    for token in map(Token.parse, tokens):
        if token.system is not None and token.system != system:
            codes.append(NO_STATUS)
        elif token.code is None:
            return ()
        else:
            codes.append(token.code)
    return codes
