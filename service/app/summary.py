"""The peer app's read: a consented summary of one of the peer's own clients, audited every time.

Every read reads the stored rows anew (one statement) and audits itself; what it decides from them is kept. The
consent decision and the summary it yields depend on nothing but those rows and the time, so a read whose rows
are exactly those of an earlier read — the same episode, assignment, peer, Consents (text and version),
background items and fetch states — at a moment before any Consent period begins or ends
(consent.unchanged_until) reuses that read's decision and rendered entries. Any change to any of them is a
different key: a new Consent version, an assignment to another peer, a new item from the EHR are seen on the
very next read, in every process, with nothing to invalidate.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from consent import DataCategory, Decision, unchanged_until
from service.app.clock import utcnow
from service.app.sharing import (
    Holdings,
    Stale,
    decide_over,
    disclosure_row,
    permitted_resources,
    stale_categories,
    stale_notice,
)
from service.errors import NotFound
from service.fhir import build
from service.store import audits, repository
from service.store.db import SessionFactory, engine_of

# Decided summaries kept per process (each holds its rows' text as its key: some kB).
CACHE_SIZE = 1024


@dataclass(frozen=True)
class _Decided:
    """What reads of one set of rows decide, from `at` until `until` (None: no Consent period lies ahead)."""

    at: datetime
    until: datetime | None
    client_id: str
    peer_name: str
    asked: tuple[DataCategory, ...]
    decision: Decision
    resources: tuple[dict[str, Any], ...]  # shared by the reads: never changed after this
    entries: tuple[bytes, ...]  # the resources rendered as Bundle entries
    stale: Stale

    def holds_at(self, now: datetime) -> bool:
        return self.at <= now and (self.until is None or now < self.until)


_Key = tuple[repository.PeerView, repository.DecisionRows, str]
_decided: OrderedDict[_Key, _Decided] = OrderedDict()


@dataclass(frozen=True)
class _Read:
    decided: _Decided
    now: datetime
    notice: dict[str, Any] | None  # the stale notice: its own id on every read


async def read_summary(
    sessions: SessionFactory, base_url: str, peer_id: str, client_id: str, *, now: datetime | None = None
) -> dict[str, Any]:
    """A Bundle (collection) holding only what the client's consents permit this peer to see, item by item.

    A client who is not the peer's — or does not exist — is the same 404, so a peer learns nothing about
    clients who are not theirs. The disclosure (or the refusal) is audited, and the audit row committed, before
    the summary is returned; concurrent reads share that commit (service/store/audits.py). `now`: the moment of
    the read (the clock's by default).
    """
    read = await _read(sessions, base_url, peer_id, client_id, now or utcnow())
    resources = [*read.decided.resources, *([read.notice] if read.notice else [])]
    return build.collection(resources, base_url, read.now)


async def read_summary_json(
    sessions: SessionFactory, base_url: str, peer_id: str, client_id: str, *, now: datetime | None = None
) -> bytes:
    """read_summary's Bundle as the bytes of its JSON response (the entries rendered once per decided summary)."""
    read = await _read(sessions, base_url, peer_id, client_id, now or utcnow())
    entries = read.decided.entries
    if read.notice:
        entries = (*entries, build.entry_json(read.notice, base_url))
    return build.collection_json(entries, read.now)


async def _read(sessions: SessionFactory, base_url: str, peer_id: str, client_id: str, now: datetime) -> _Read:
    # One statement, outside any transaction: no writer's turn is held while reading.
    found = await repository.peer_summary_rows(engine_of(sessions), peer_id, client_id)
    if found is None:
        raise NotFound(f"Patient/{client_id} is not known")
    key = (*found, base_url)
    decided = _decided.get(key)
    if decided is None or not decided.holds_at(now):
        decided = _decide(*found, base_url, now)
        _decided[key] = decided
        if len(_decided) > CACHE_SIZE:
            _decided.popitem(last=False)
    else:
        _decided.move_to_end(key)
    actor = f"Practitioner/{peer_id}"
    row = disclosure_row(decided.client_id, actor, decided.peer_name, decided.decision, decided.asked, now)
    await audits.append(sessions, row)
    return _Read(decided, now, stale_notice(decided.stale) if decided.stale else None)


def _decide(view: repository.PeerView, rows: repository.DecisionRows, base_url: str, now: datetime) -> _Decided:
    holdings = Holdings.of_view(view, rows)
    consents = holdings.consents or ()
    actor = f"Practitioner/{view.peer_id}"
    asked = tuple(c for c in DataCategory if c in holdings.held_categories() | holdings.fetched_categories())
    decision = decide_over(consents, holdings, actor, assigned=True, categories=asked, at=now)
    resources = tuple(permitted_resources(decision, holdings))
    return _Decided(
        at=now,
        until=unchanged_until(consents, now),
        client_id=view.client_id,
        peer_name=view.peer_name,
        asked=asked,
        decision=decision,
        resources=resources,
        entries=tuple(build.entry_json(r, base_url) for r in resources),
        stale=stale_categories(decision, holdings),
    )
