"""The peer app's read: a consented summary of one of the peer's own clients, audited every time.

Every read reads the stored rows anew (one statement) and audits itself; what it decides from them is kept. The
consent decision and the summary it yields depend on nothing but those rows and the time, so a read whose rows
are exactly those of the last read of the same client — the same episode, assignment, peer, Consents (text and
version), background items and fetch states, told by a SHA-256 digest of them — at a moment before any Consent
period begins or ends (consent.unchanged_until) reuses that read's decision and rendered entries. Any change to
any of them is a different digest: a new Consent version, an assignment to another peer, a new item from the EHR
are seen on the very next read, in every process, with nothing to invalidate.

What is kept is PHI, so it is kept little and briefly: one entry per client (a new digest replaces the old entry
at once, so what was shown before a revocation or reassignment is not retained past the next read), no row text
(only the digest and the rendered entries), dropped when its peer's read is refused, within a byte budget (least
recently read first out; a summary too large for a share of it is not kept) and for at most IDLE_SECONDS after
its last read.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from consent import DataCategory, Decision, unchanged_until
from service.app import refusals
from service.app.clock import utcnow
from service.app.disclosures import Disclosed, disclosure_text
from service.app.sharing import Holdings, Stale, decide_over, permitted_resources, stale_categories, stale_notice
from service.fhir import build
from service.store import audits, repository
from service.store.db import SessionFactory, engine_of

# Bytes of decided summaries kept per process (their rendered entries, and ENTRY_BYTES for the rest of each, so a
# summary that shows nothing still counts); one summary larger than an eighth of it is not kept.
CACHE_BYTES = 32 * 1024 * 1024
ENTRY_BYTES = 2048
# A kept summary not read for this long is forgotten.
IDLE_SECONDS = 600.0


@dataclass(frozen=True)
class _Decided:
    """What reads of one set of rows decide, from `at` until `until` (None: no Consent period lies ahead)."""

    digest: bytes  # of the rows (and base URL) it was decided from
    at: datetime
    until: datetime | None
    client_id: str
    peer_id: str
    peer_name: str
    asked: tuple[DataCategory, ...]
    decision: Decision
    entries: tuple[bytes, ...]  # the permitted resources rendered as Bundle entries: the only copy kept
    stale: Stale
    disclosed: Disclosed  # each read's audit row, rendered but for its id and moment

    @property
    def size(self) -> int:
        return ENTRY_BYTES + self.disclosed.text.size + sum(len(e) for e in self.entries)

    def holds(self, digest: bytes, now: datetime) -> bool:
        return self.digest == digest and self.at <= now and (self.until is None or now < self.until)


class DecidedSummaries:
    """The last decided summary of each client, least recently read first: within `budget` bytes, and none kept
    once it has not been read for `idle` seconds (of `clock`), so a summary no one reads again (its client's
    Consent revoked, say) does not stay for long."""

    def __init__(
        self, budget: int = CACHE_BYTES, idle: float = IDLE_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.budget = budget
        self.idle = idle
        self.clock = clock
        self.size = 0  # bytes held, as _Decided.size counts them
        self._held: OrderedDict[str, tuple[_Decided, float]] = OrderedDict()  # with when it was last read

    def __len__(self) -> int:
        return len(self._held)

    def values(self) -> tuple[_Decided, ...]:
        return tuple(decided for decided, _ in self._held.values())

    def get(self, client_id: str, digest: bytes, now: datetime) -> _Decided | None:
        self._forget_idle()
        held = self._held.get(client_id)
        if held is None or not held[0].holds(digest, now):
            return None
        self._held[client_id] = (held[0], self.clock())
        self._held.move_to_end(client_id)
        return held[0]

    def put(self, decided: _Decided) -> None:
        """Keep `decided` in place of whatever was kept of its client (unless it is too large to keep)."""
        self.drop(decided.client_id)
        size = decided.size
        if size > self.budget // 8:
            return
        self._held[decided.client_id] = (decided, self.clock())
        self.size += size
        while self.size > self.budget:
            _, (oldest, _) = self._held.popitem(last=False)
            self.size -= oldest.size

    def drop(self, client_id: str, peer_id: str | None = None) -> None:
        """Forget the client's summary (only if it was decided for `peer_id`, when given)."""
        held = self._held.get(client_id)
        if held is not None and (peer_id is None or held[0].peer_id == peer_id):
            del self._held[client_id]
            self.size -= held[0].size

    def clear(self) -> None:
        self._held.clear()
        self.size = 0

    def _forget_idle(self) -> None:
        since = self.clock() - self.idle
        while self._held:
            client_id, (oldest, read) = next(iter(self._held.items()))
            if read >= since:
                return
            del self._held[client_id]
            self.size -= oldest.size


_decided = DecidedSummaries()


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
    the read (the clock's by default). The Bundle is the caller's own: nothing kept is handed out.
    """
    rendered = await read_summary_json(sessions, base_url, peer_id, client_id, now=now)
    bundle: dict[str, Any] = json.loads(rendered)
    return bundle


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
        _decided.drop(client_id, peer_id)  # no longer this peer's: what they were shown is not kept
        raise refusals.not_theirs(peer_id, "Patient", client_id)
    digest = _digest(*found, base_url)
    decided = _decided.get(client_id, digest, now)
    if decided is None:
        decided = _decide(*found, digest, base_url, now)
        _decided.put(decided)
    await audits.append(sessions, decided.disclosed.row(now))
    return _Read(decided, now, stale_notice(decided.stale) if decided.stale else None)


def _digest(view: repository.PeerView, rows: repository.DecisionRows, base_url: str) -> bytes:
    # Every field of both, in field order, and the base URL, each with its kind and length, so equal digests are
    # equal rows; surrogatepass: a lone surrogate in stored text still hashes. Field by field: a repr of the whole
    # (about 50 us for a 5 KB summary's rows) cost more than the hash itself.
    parts: list[bytes] = []
    _parts((tuple(vars(view).values()), tuple(vars(rows).values()), base_url), parts.append)
    return hashlib.sha256(b"".join(parts)).digest()


def _parts(value: object, add: Callable[[bytes], None]) -> None:
    if isinstance(value, str):
        encoded = value.encode("utf-8", "surrogatepass")
        add(b"s%d:" % len(encoded))
        add(encoded)
    elif isinstance(value, tuple):
        add(b"(%d:" % len(value))
        for each in value:
            _parts(each, add)
    elif value is None:
        add(b"n")
    elif isinstance(value, int) and not isinstance(value, bool):
        add(b"i%d;" % value)
    elif isinstance(value, datetime):
        add(b"t" + repr(value).encode("ascii") + b";")  # repr, unlike isoformat, tells fold and tzinfo apart
    else:  # a kind of value this digest does not tell apart from the others: refuse rather than guess
        raise TypeError(f"no digest for a {type(value).__name__}")


def _decide(
    view: repository.PeerView, rows: repository.DecisionRows, digest: bytes, base_url: str, now: datetime
) -> _Decided:
    holdings = Holdings.of_view(view, rows)
    consents = holdings.consents or ()
    actor = f"Practitioner/{view.peer_id}"
    asked = tuple(c for c in DataCategory if c in holdings.held_categories() | holdings.fetched_categories())
    decision = decide_over(consents, holdings, actor, assigned=True, categories=asked, at=now)
    return _Decided(
        digest=digest,
        at=now,
        until=unchanged_until(consents, now),
        client_id=view.client_id,
        peer_id=view.peer_id,
        peer_name=view.peer_name,
        asked=asked,
        decision=decision,
        entries=tuple(build.entry_json(r, base_url) for r in permitted_resources(decision, holdings)),
        stale=stale_categories(decision, holdings),
        disclosed=Disclosed(
            view.client_id, actor, disclosure_text(view.client_id, actor, view.peer_name, decision, asked)
        ),
    )
