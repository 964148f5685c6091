"""Each site's EHR connection, as the workers and the CLI use it: the EhrClient (write-back, reads, searches) and
the EhrReader (intake) of a site, built from its row (service/app/sites.py `connection_of`).

Clients are kept per site and built again when the site's row changes (`peerway site set`, a rotated key file
path): a row is re-read at most every `ttl` seconds, so a change takes effect without a restart. A client that
was replaced may still be in use by a request in flight, so it is closed with the directory, not at once.

The "default" site without its own base URL uses the PEERWAY_EHR_* settings (its static token included). A site
that is disabled, or not registered, gets no connection: the caller sees an UpstreamError (a transient failure:
the row is retried, and becomes a dead letter past its horizon, saying why).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from service.app.sites import connection_of
from service.domain import SiteConnection
from service.errors import UpstreamError
from service.fhir.client import EhrClient, WriteMode, check_writable
from service.fhir.fetch import EhrReader
from service.fhir.smart import SigningKeyError, connection_tokens
from service.settings import Settings
from service.store import sites as store
from service.store.db import SessionFactory
from service.store.sites import DEFAULT_SITE, Site

SITE_REREAD_SECONDS = 5.0


@dataclass
class _Entry:
    version: tuple[datetime | None, str, str | None]  # (updated_at, status, base URL) of the row it was built from
    connection: SiteConnection
    client: EhrClient
    reader: EhrReader
    checked_at: float


def _write_mode(value: str) -> WriteMode:
    return "conditional-create" if value == "conditional-create" else "put"


class EhrDirectory:
    """Answers a site's EhrClient and EhrReader; one of each per site, shared by every task of the process."""

    def __init__(
        self,
        sessions: SessionFactory,
        settings: Settings,
        *,
        ttl: float = SITE_REREAD_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sessions = sessions
        self._settings = settings
        self._ttl = ttl
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._retired: list[_Entry] = []
        self._locks: dict[str, asyncio.Lock] = {}

    async def client(self, site: str) -> EhrClient:
        return (await self._entry(site)).client

    async def reader(self, site: str) -> EhrReader:
        return (await self._entry(site)).reader

    async def connection(self, site: str) -> SiteConnection:
        return (await self._entry(site)).connection

    async def write_target(self, site: str) -> tuple[EhrClient, WriteMode]:
        """The site's client and the write mode its EHR wants (PUT, or conditional create).

        Raises UnsupportedFhirVersion for an EHR that speaks another major FHIR version than R4/R4B."""
        entry = await self._entry(site)
        check_writable(entry.connection.fhir_version)
        return entry.client, _write_mode(entry.connection.write_mode)

    async def aclose(self) -> None:
        entries, self._entries = [*self._entries.values(), *self._retired], {}
        self._retired = []
        for entry in entries:
            await _close(entry)

    async def _entry(self, site: str) -> _Entry:
        entry = self._entries.get(site)
        if entry is not None and self._clock() - entry.checked_at < self._ttl:
            return entry
        async with self._locks.setdefault(site, asyncio.Lock()):
            entry = self._entries.get(site)
            now = self._clock()
            if entry is not None and now - entry.checked_at < self._ttl:
                return entry
            row = await self._row(site)
            version = (row.updated_at, row.status, row.fhir_base_url) if row is not None else (None, "", None)
            if entry is not None and entry.version == version:
                entry.checked_at = now
                return entry
            if entry is not None:
                self._retired.append(self._entries.pop(site))
            if row is None and site == DEFAULT_SITE:  # a database from before sites: the settings' EHR
                row = Site(id=DEFAULT_SITE, name=DEFAULT_SITE, status="active", fhir_version="4.0.1", write_mode="put")
                row.fhir_base_url = None
            if row is None:
                raise UpstreamError(f"no site {site} is registered: nowhere to reach its EHR")
            if row.status != "active":
                raise UpstreamError(f"site {site} is disabled: its EHR is not contacted")
            entry = self._build(row, version, now)
            self._entries[site] = entry
            return entry

    async def _row(self, site: str) -> Site | None:
        async with self._sessions() as session:
            row = await store.site(session, site)
            if row is not None:
                session.expunge(row)
            return row

    def _build(self, row: Site, version: tuple[datetime | None, str, str | None], now: float) -> _Entry:
        settings = self._settings
        connection = connection_of(row, settings)
        try:
            tokens = connection_tokens(connection, settings)
        except SigningKeyError as exc:
            raise UpstreamError(str(exc)) from None
        speaks = connection.fhir_version
        timeout = settings.ehr_timeout_seconds
        client = EhrClient(connection.fhir_base_url, tokens=tokens, timeout=timeout, fhir_version=speaks)
        reader = EhrReader(connection.fhir_base_url, tokens.token, timeout=timeout, fhir_version=speaks)
        return _Entry(version, connection, client, reader, now)


async def _close(entry: _Entry) -> None:
    await entry.reader.aclose()
    await entry.client.aclose()


class FixedEhr:
    """One EHR client for every site, in the settings' write mode (single-EHR tools and tests)."""

    def __init__(self, client: EhrClient, settings: Settings) -> None:
        self._client = client
        self._mode: WriteMode = settings.ehr_write_mode

    async def write_target(self, site: str) -> tuple[EhrClient, WriteMode]:
        return self._client, self._mode
