"""Each site's EhrClient, as the workers and the CLI share it: one per site, built from the site's connection.

Clients are kept per site and built again when the site changes (`peerway site set`, a rotated key file path):
the site is looked up again at most every `ttl` seconds, so a change takes effect without a restart. A client
that was replaced may still be in use by a request in flight, so it is closed with the directory, not at once.

Where a site's connection comes from (its row, the settings) is the caller's `lookup` (service/app/sites.py):
it answers the site's version (anything comparable; a new one means "build again") and its connection, or
raises UpstreamError for a site whose EHR is not to be contacted (a transient failure for the caller: the work
is retried, and becomes a dead letter past its horizon, saying why).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from service.ehr.client import EhrClient
from service.ehr.connection import SiteConnection, WriteMode, check_writable
from service.ehr.smart import SigningKeyError
from service.ehr.tokens import site_tokens
from service.errors import UpstreamError

SITE_REREAD_SECONDS = 5.0

# site -> (version of what it was built from, its connection); raises UpstreamError when not to be contacted
SiteLookup = Callable[[str], Awaitable[tuple[object, SiteConnection]]]


def connect(connection: SiteConnection) -> EhrClient:
    """The site's client: its token provider, timeout and FHIR version. SigningKeyError for an unusable key."""
    return EhrClient(
        connection.fhir_base_url,
        tokens=site_tokens(connection),
        timeout=connection.timeout_seconds,
        fhir_version=connection.fhir_version,
    )


@dataclass
class _Entry:
    version: object
    connection: SiteConnection
    client: EhrClient
    checked_at: float


class EhrDirectory:
    """Answers a site's EhrClient; one per site, shared by every task of the process (intake and write-back)."""

    def __init__(
        self, lookup: SiteLookup, *, ttl: float = SITE_REREAD_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._lookup = lookup
        self._ttl = ttl
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._retired: list[_Entry] = []
        self._locks: dict[str, asyncio.Lock] = {}

    async def client(self, site: str) -> EhrClient:
        return (await self._entry(site)).client

    async def connection(self, site: str) -> SiteConnection:
        return (await self._entry(site)).connection

    async def write_target(self, site: str) -> tuple[EhrClient, WriteMode]:
        """The site's client and the write mode its EHR wants (PUT, or conditional create).

        Raises UnsupportedFhirVersion for an EHR that speaks another major FHIR version than R4/R4B."""
        entry = await self._entry(site)
        check_writable(entry.connection.fhir_version)
        return entry.client, entry.connection.writes

    async def aclose(self) -> None:
        entries, self._entries = [*self._entries.values(), *self._retired], {}
        self._retired = []
        for entry in entries:
            await entry.client.aclose()

    async def _entry(self, site: str) -> _Entry:
        entry = self._entries.get(site)
        if entry is not None and self._clock() - entry.checked_at < self._ttl:
            return entry
        async with self._locks.setdefault(site, asyncio.Lock()):
            entry = self._entries.get(site)
            now = self._clock()
            if entry is not None and now - entry.checked_at < self._ttl:
                return entry
            try:
                version, connection = await self._lookup(site)
            except UpstreamError:  # the site is gone, disabled or unreachable as configured: so is its client
                self._retire(site)
                raise
            if entry is not None and entry.version == version:
                entry.checked_at = now
                return entry
            self._retire(site)
            try:
                client = connect(connection)
            except SigningKeyError as exc:
                raise UpstreamError(str(exc)) from None
            entry = self._entries[site] = _Entry(version, connection, client, now)
            return entry

    def _retire(self, site: str) -> None:
        entry = self._entries.pop(site, None)
        if entry is not None:
            self._retired.append(entry)


class FixedEhr:
    """One EHR client for every site, in one write mode (single-EHR tools and tests)."""

    def __init__(self, client: EhrClient, write_mode: WriteMode) -> None:
        self._client = client
        self._mode: WriteMode = write_mode

    async def write_target(self, site: str) -> tuple[EhrClient, WriteMode]:
        return self._client, self._mode
