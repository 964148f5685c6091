"""The region's sites (hospitals) and peer organizations: adding and changing them (the `peerway site` and
`peerway org` commands), attributing a notification to the site whose channel secret it carries, and each
site's EHR connection.

A site row without its own FHIR base URL takes its connection from the PEERWAY_EHR_* settings: that is how a
single-hospital deployment from before sites existed keeps working unchanged (its site is "default").
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError

from service.app.clock import utcnow
from service.ehr.client import EhrClient
from service.ehr.connection import SiteConnection
from service.ehr.directory import SITE_REREAD_SECONDS, EhrDirectory
from service.ehr.tokens import site_tokens
from service.errors import Conflict, InvalidResource, NotFound, UpstreamError
from service.settings import Settings
from service.store import sites as store
from service.store.db import SessionFactory, transaction
from service.store.sites import DEFAULT_SITE, PeerOrganization, Site

FHIR_VERSIONS = ("4.0.1", "4.3.0", "5.0.0")
WRITE_MODES = ("put", "conditional-create", "batch")
SITE_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")


@dataclass(frozen=True)
class SiteSpec:
    """What an operator gives for a site; None leaves a setting as it is (on update) or unset (on add)."""

    name: str | None = None
    fhir_base_url: str | None = None
    fhir_version: str | None = None
    write_mode: str | None = None
    token_url: str | None = None
    client_id: str | None = None
    private_key_path: str | None = None
    key_id: str | None = None
    scope: str | None = None
    bearer_token_path: str | None = None
    status: str | None = None


@dataclass(frozen=True)
class SiteView:
    id: str
    name: str
    status: str
    fhir_base_url: str | None
    fhir_version: str
    write_mode: str
    smart_client_id: str | None
    has_channel_secret: bool
    uses_settings: bool  # reaches its EHR through the PEERWAY_EHR_* settings


def secret_digest(secret: str) -> str:
    return hashlib.sha256(secret.strip().encode()).hexdigest()


def _view(row: Site) -> SiteView:
    return SiteView(
        id=row.id,
        name=row.name,
        status=row.status,
        fhir_base_url=row.fhir_base_url,
        fhir_version=row.fhir_version,
        write_mode=row.write_mode,
        smart_client_id=row.client_id,
        has_channel_secret=row.channel_secret_sha256 is not None,
        uses_settings=uses_settings(row),
    )


def _check(spec: SiteSpec) -> None:
    if spec.fhir_version is not None and spec.fhir_version not in FHIR_VERSIONS:
        raise InvalidResource(f"fhir_version must be one of {', '.join(FHIR_VERSIONS)}", "fhir_version")
    if spec.write_mode is not None and spec.write_mode not in WRITE_MODES:
        raise InvalidResource(f"write_mode must be one of {', '.join(WRITE_MODES)}", "write_mode")
    if spec.status is not None and spec.status not in ("active", "disabled"):
        raise InvalidResource("status must be active or disabled", "status")
    if spec.fhir_base_url is not None and not spec.fhir_base_url.startswith(("http://", "https://")):
        raise InvalidResource("fhir_base_url must be an http(s) URL", "fhir_base_url")


def _apply(row: Site, spec: SiteSpec) -> None:
    for field in (
        "name",
        "fhir_base_url",
        "fhir_version",
        "write_mode",
        "token_url",
        "client_id",
        "private_key_path",
        "key_id",
        "scope",
        "bearer_token_path",
        "status",
    ):
        value = getattr(spec, field)
        if value is not None:
            setattr(row, field, value.rstrip("/") if field == "fhir_base_url" else value)
    if row.token_url and not (row.client_id and row.private_key_path):
        raise InvalidResource("a SMART token URL needs a client id and a private key path", "token_url")


def channel_secret() -> str:
    """A new channel secret: 32 random bytes, URL-safe base64, never starting with "-" (one in 64 did, and a
    command line then read it as an option: `peerway subscription create --channel-secret -Xy...` failed)."""
    while (secret := secrets.token_urlsafe(32)).startswith("-"):
        pass
    return secret


async def add_site(sessions: SessionFactory, site_id: str, spec: SiteSpec) -> tuple[SiteView, str]:
    """Register a site; answers it with its new channel secret (shown once: only its hash is kept)."""
    if not site_id or len(site_id) > 64 or not set(site_id) <= SITE_ID_CHARS:
        raise InvalidResource("a site id is 1-64 characters of a-z, 0-9 and -", "id")
    _check(spec)
    secret = channel_secret()
    now = utcnow()
    row = Site(
        id=site_id,
        name=spec.name or site_id,
        status=spec.status or "active",
        fhir_version=spec.fhir_version or "4.0.1",
        write_mode=spec.write_mode or "put",
        channel_secret_sha256=secret_digest(secret),
        created_at=now,
        updated_at=now,
    )
    _apply(row, spec)
    try:
        async with transaction(sessions) as session:
            if await store.site(session, site_id) is not None:
                raise Conflict(f"site {site_id} exists already (use `peerway site set`)")
            session.add(row)
    except IntegrityError:
        raise Conflict(f"site {site_id} exists already") from None
    return _view(row), secret


async def update_site(sessions: SessionFactory, site_id: str, spec: SiteSpec) -> SiteView:
    _check(spec)
    async with transaction(sessions) as session:
        row = await store.site(session, site_id)
        if row is None:
            raise NotFound(f"no site {site_id}")
        _apply(row, spec)
        row.updated_at = utcnow()
        return _view(row)


async def rotate_secret(sessions: SessionFactory, site_id: str) -> str:
    """A new channel secret for the site; the old one stops working at once."""
    secret = channel_secret()
    async with transaction(sessions) as session:
        row = await store.site(session, site_id)
        if row is None:
            raise NotFound(f"no site {site_id}")
        row.channel_secret_sha256 = secret_digest(secret)
        row.updated_at = utcnow()
    return secret


async def list_sites(sessions: SessionFactory) -> Sequence[SiteView]:
    async with sessions() as session:
        return [_view(row) for row in await store.sites(session)]


async def site_of_secret(sessions: SessionFactory, secret: str) -> str | None:
    """The active site whose channel secret this is, or None. Only hashes are compared (the secret is random)."""
    async with sessions() as session:
        row = await store.site_by_secret_digest(session, secret_digest(secret))
        return row.id if row is not None and row.status == "active" else None


async def is_active_site(sessions: SessionFactory, site_id: str) -> bool:
    async with sessions() as session:
        row = await store.site(session, site_id)
        return row is not None and row.status == "active"


def uses_settings(row: Site) -> bool:
    """Whether the site reaches its EHR through the PEERWAY_EHR_* settings: the site "default", and the sites
    of a single-site database the upgrade registered (write mode "settings"), while they have no base URL."""
    return row.fhir_base_url is None and (row.id == DEFAULT_SITE or row.write_mode == "settings")


def connection_of(row: Site, settings: Settings) -> SiteConnection:
    """The site's EHR connection. A site registered without a base URL has none (UpstreamError: its writes
    wait, then become dead letters saying why) — never the default site's EHR, which is not its hospital's."""
    if row.fhir_base_url is None and not uses_settings(row):
        raise UpstreamError(f"site {row.id} has no FHIR base URL: `peerway site set {row.id} --fhir-base-url ...`")
    if row.fhir_base_url is None:
        return settings_connection(settings, row.id, row.fhir_version)
    return SiteConnection(
        site=row.id,
        fhir_base_url=row.fhir_base_url,
        fhir_version=row.fhir_version,
        write_mode=settings.ehr_write_mode if row.write_mode == "settings" else row.write_mode,
        token_url=row.token_url,
        client_id=row.client_id,
        private_key_path=row.private_key_path,
        key_id=row.key_id,
        scope=row.scope or settings.ehr_scope,
        bearer_token_path=row.bearer_token_path,
        timeout_seconds=settings.ehr_timeout_seconds,
        token_refresh_margin_seconds=settings.ehr_token_refresh_margin_seconds,
    )


def settings_connection(settings: Settings, site: str = DEFAULT_SITE, fhir_version: str = "4.0.1") -> SiteConnection:
    """The EHR connection the PEERWAY_EHR_* settings describe (the site "default", and sites upgraded from a
    single-site database)."""
    return SiteConnection(
        site=site,
        fhir_base_url=settings.ehr_base_url,
        fhir_version=fhir_version,
        write_mode=settings.ehr_write_mode,
        token_url=settings.ehr_token_url,
        client_id=settings.ehr_client_id,
        private_key_path=settings.ehr_private_key_path,
        key_id=settings.ehr_key_id,
        scope=settings.ehr_scope,
        bearer_token=settings.ehr_bearer_token.get_secret_value() if settings.ehr_bearer_token else None,
        timeout_seconds=settings.ehr_timeout_seconds,
        token_refresh_margin_seconds=settings.ehr_token_refresh_margin_seconds,
    )


def settings_ehr(settings: Settings) -> EhrClient:
    """One EHR client for the settings' EHR (single-EHR tools and tests; the service uses site_directory)."""
    connection = settings_connection(settings)
    return EhrClient(connection.fhir_base_url, tokens=site_tokens(connection), timeout=connection.timeout_seconds)


def site_directory(
    sessions: SessionFactory,
    settings: Settings,
    *,
    ttl: float = SITE_REREAD_SECONDS,
    clock: Callable[[], float] = time.monotonic,
) -> EhrDirectory:
    """Each site's EHR client, built from its row and built again when the row changes (re-read every `ttl` s).

    The "default" site without its own base URL uses the PEERWAY_EHR_* settings (its static token included). A
    site that is disabled, or not registered, gets no client: the caller sees an UpstreamError (a transient
    failure: the work is retried, and becomes a dead letter past its horizon, saying why).
    """

    async def lookup(site: str) -> tuple[object, SiteConnection]:
        async with sessions() as session:
            row = await store.site(session, site)
            if row is not None:
                session.expunge(row)
        if row is None and site == DEFAULT_SITE:  # a database from before sites: the settings' EHR
            return (None, "", None), settings_connection(settings, DEFAULT_SITE)
        if row is None:
            raise UpstreamError(f"no site {site} is registered: nowhere to reach its EHR")
        if row.status != "active":
            raise UpstreamError(f"site {site} is disabled: its EHR is not contacted")
        return (row.updated_at, row.status, row.fhir_base_url), connection_of(row, settings)

    return EhrDirectory(lookup, ttl=ttl, clock=clock)


async def add_organization(sessions: SessionFactory, organization_id: str, name: str) -> None:
    if not organization_id or len(organization_id) > 64 or not set(organization_id) <= SITE_ID_CHARS:
        raise InvalidResource("an organization id is 1-64 characters of a-z, 0-9 and -", "id")
    try:
        async with transaction(sessions) as session:
            if await session.get(PeerOrganization, organization_id) is not None:
                raise Conflict(f"organization {organization_id} exists already")
            session.add(PeerOrganization(id=organization_id, name=name or organization_id, created_at=utcnow()))
    except IntegrityError:
        raise Conflict(f"organization {organization_id} exists already") from None


async def list_organizations(sessions: SessionFactory) -> Sequence[tuple[str, str]]:
    async with sessions() as session:
        return [(o.id, o.name) for o in await store.organizations(session)]
