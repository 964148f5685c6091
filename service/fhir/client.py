"""The EHR's FHIR server, as the outbox worker (and intake's id-only notifications) talk to it.

Never called inside a DB transaction. Every answer that is not a success becomes an UpstreamError carrying the
HTTP status, Retry-After and the EHR's OperationOutcome, so the caller can decide: retry, or dead letter.
Authorization comes from a TokenProvider (a static token, or SMART Backend Services in service/fhir/smart.py);
on a 401 the client asks the provider for a fresh token once and repeats the request.
"""

from __future__ import annotations

import email.utils
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, Protocol
from urllib.parse import quote

import httpx

from service.errors import UpstreamError

FHIR_JSON = "application/fhir+json"
WRITABLE_VERSIONS = ("4.0", "4.3")  # R4 and R4B read our R4 resources alike; R5 reshaped Encounter and CareTeam


class UnsupportedFhirVersion(Exception):
    """Peerway builds R4 resources; an EHR speaking another major version cannot take them."""


def fhir_json(version: str | None) -> str:
    """The FHIR JSON media type, with the fhirVersion parameter (major.minor) when the EHR's version is known."""
    if not version:
        return FHIR_JSON
    return f"{FHIR_JSON}; fhirVersion={'.'.join(version.split('.')[:2])}"


def check_writable(version: str | None) -> None:
    if version and ".".join(version.split(".")[:2]) not in WRITABLE_VERSIONS:
        raise UnsupportedFhirVersion(f"write-back speaks FHIR R4 (4.0.1); this EHR speaks {version}")


MAX_SEARCH_PAGES = 50

SearchParams = Mapping[str, str] | Sequence[tuple[str, str]]
WriteMode = Literal["put", "conditional-create"]

log = logging.getLogger(__name__)


class TokenProvider(Protocol):
    """Where the client's bearer token comes from."""

    async def token(self) -> str | None:
        """A token to send now (cached; renewed ahead of its expiry), or None for no Authorization."""
        ...

    async def refresh(self, rejected: str | None) -> str | None:
        """The EHR answered 401 to `rejected`: a new token, or None when there is no other to try."""
        ...

    async def aclose(self) -> None: ...


class StaticToken:
    """A fixed bearer token (PEERWAY_EHR_BEARER_TOKEN), or none at all. A 401 cannot be cured by refreshing."""

    def __init__(self, value: str | None) -> None:
        self._value = value

    async def token(self) -> str | None:
        return self._value

    async def refresh(self, rejected: str | None) -> str | None:
        return None

    async def aclose(self) -> None:
        return None


@dataclass(frozen=True)
class Placed:
    """Where a write landed at the EHR, and the copies of it (ours, duplicated by a race) found on the way."""

    reference: str  # Type/id at the EHR
    kept_over: tuple[str, ...] = ()  # ids of the duplicates that were found (all newer than the one kept)
    removed: tuple[str, ...] = ()  # those of them the EHR let us delete

    @property
    def note(self) -> str | None:
        if not self.kept_over:
            return None
        return (
            f"resolved {len(self.kept_over)} duplicate {self.reference.split('/')[0]} at the EHR: kept "
            f"{self.reference.split('/')[1]}, removed {', '.join(self.removed) or 'none'}"
        )


@dataclass(frozen=True)
class Written:
    """What the EHR answered to a write: 201 (created) or 200 (updated, or an existing match)."""

    status: int
    resource: dict[str, Any]

    @property
    def created(self) -> bool:
        return self.status == 201


def retry_after(response: httpx.Response) -> float | None:
    """Seconds the EHR asked us to wait (Retry-After as seconds or an HTTP date), if it asked."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _age(resource: dict[str, Any]) -> tuple[str, str]:
    """Oldest first: by lastUpdated (FHIR instants in one zone sort as text), then by id for a stable choice."""
    return (str((resource.get("meta") or {}).get("lastUpdated") or ""), str(resource["id"]))


def _json_object(response: httpx.Response) -> dict[str, Any] | None:
    try:
        data = response.json()
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


class EhrClient:
    """Idempotent writes (PUT with our own id, or a conditional create on our identifier), reads and searches."""

    def __init__(
        self,
        base_url: str,
        *,
        bearer_token: str | None = None,
        tokens: TokenProvider | None = None,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
        fhir_version: str | None = None,
    ) -> None:
        self._base = base_url.rstrip("/") + "/"
        self._tokens: TokenProvider = tokens if tokens is not None else StaticToken(bearer_token)
        self._media_type = fhir_json(fhir_version)
        self._http = httpx.AsyncClient(
            base_url=self._base,
            headers={"Accept": self._media_type},
            timeout=timeout,
            transport=transport,
        )

    async def aclose(self) -> None:
        await self._http.aclose()
        await self._tokens.aclose()

    # --- writes ------------------------------------------------------------------------------------------------

    async def put(self, resource: dict[str, Any]) -> dict[str, Any]:
        """PUT [type]/[id]: creates the resource under our id, or replaces it (update-as-create)."""
        return (await self.update(resource)).resource

    async def update(self, resource: dict[str, Any]) -> Written:
        path = f"{resource['resourceType']}/{quote(resource['id'], safe='')}"
        return await self._write("PUT", path, resource)

    async def create_if_none_exist(self, resource: dict[str, Any], identifier: str) -> dict[str, Any]:
        """POST with If-None-Exist: the EHR creates it once; a repeat answers 200 with the existing one."""
        return (await self.conditional_create(resource, identifier)).resource

    async def conditional_create(self, resource: dict[str, Any], identifier: str) -> Written:
        """As create_if_none_exist, telling created (201) from found (200). Several matches: UpstreamError 412."""
        body = {k: v for k, v in resource.items() if k != "id"}
        return await self._write(
            "POST", resource["resourceType"], body, headers={"If-None-Exist": f"identifier={quote(identifier)}"}
        )

    async def place(self, resource: dict[str, Any], identifier: str, *, mode: WriteMode, mutable: bool) -> Placed:
        """Write the resource so that exactly one copy of it is at the EHR, in the EHR's write mode.

        "put": PUT [type]/[our id]. "conditional-create": POST with If-None-Exist on `identifier` (system|value);
        when it was already there, a `mutable` resource is updated at the EHR's id. When several carry the
        identifier (a 412) or a search after our create finds another, the oldest is kept, the others (our own
        duplicates, from a race) are deleted, and the answer says so.
        """
        resource_type = resource["resourceType"]
        if mode == "put":
            await self.update(resource)
            return Placed(f"{resource_type}/{resource['id']}")
        try:
            written: Written | None = await self.conditional_create(resource, identifier)
        except UpstreamError as exc:
            if exc.http_status != httpx.codes.PRECONDITION_FAILED:
                raise
            written = None
        ours = str(written.resource.get("id") or "") if written is not None else ""
        if written is not None and not written.created and ours:
            if mutable:
                await self.update({**resource, "id": ours})
            return Placed(f"{resource_type}/{ours}")
        # We created it, or several match: whoever raced us, exactly one must remain.
        matches = [m for m in await self.search(resource_type, {"identifier": identifier}) if m.get("id")]
        if not matches:
            if ours:
                return Placed(f"{resource_type}/{ours}")  # the EHR's search lags behind its writes
            raise UpstreamError(f"EHR reported several {resource_type} matching our identifier, then none")
        kept = min(matches, key=_age)
        extras = [str(m["id"]) for m in matches if m["id"] != kept["id"]]
        removed = [extra for extra in extras if await self._delete_quietly(resource_type, extra)]
        if mutable and ours != kept["id"]:
            await self.update({**resource, "id": kept["id"]})
        placed = Placed(f"{resource_type}/{kept['id']}", tuple(extras), tuple(removed))
        if placed.note:
            log.warning("%s", placed.note)
        return placed

    async def _delete_quietly(self, resource_type: str, resource_id: str) -> bool:
        try:
            await self.delete(resource_type, resource_id)
        except UpstreamError as exc:
            log.warning("could not remove duplicate %s/%s: %s", resource_type, resource_id, exc.diagnostics)
            return False
        return True

    async def delete(self, resource_type: str, resource_id: str) -> None:
        await self._send("DELETE", f"{resource_type}/{quote(resource_id, safe='')}")

    # --- reads -------------------------------------------------------------------------------------------------

    async def read(self, resource_type: str, resource_id: str) -> dict[str, Any]:
        """GET [type]/[id]. A resource the EHR does not have is an UpstreamError with http_status 404 (or 410)."""
        response = await self._send("GET", f"{resource_type}/{quote(resource_id, safe='')}")
        return _json_object(response) or {}

    async def search(self, resource_type: str, params: SearchParams) -> list[dict[str, Any]]:
        """GET [type]?params: the matching resources (search mode "match"), following `next` links.

        Only links under the EHR's own base are followed (our bearer token never leaves it), at most
        MAX_SEARCH_PAGES pages.
        """
        found: list[dict[str, Any]] = []
        url: str | None = resource_type
        query: SearchParams | None = params
        for _ in range(MAX_SEARCH_PAGES):
            if url is None:
                break
            bundle = _json_object(await self._send("GET", url, params=query)) or {}
            for entry in bundle.get("entry") or []:
                resource = entry.get("resource") if isinstance(entry, dict) else None
                mode = (entry.get("search") or {}).get("mode", "match") if isinstance(entry, dict) else None
                if isinstance(resource, dict) and mode == "match":
                    found.append(resource)
            url = self._next_link(bundle)
            query = None  # the next link carries the whole query
        return found

    def _next_link(self, bundle: dict[str, Any]) -> str | None:
        for link in bundle.get("link") or []:
            if isinstance(link, dict) and link.get("relation") == "next" and isinstance(link.get("url"), str):
                target: str = link["url"]
                return target if target.startswith(self._base) else None
        return None

    # --- the wire ----------------------------------------------------------------------------------------------

    async def _write(
        self, method: str, path: str, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> Written:
        response = await self._send(
            method, path, json=body, headers={"Content-Type": self._media_type, **(headers or {})}
        )
        return Written(status=response.status_code, resource=_json_object(response) or {})

    async def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        token = await self._tokens.token()
        response = await self._request(method, path, token, **kwargs)
        if response.status_code == httpx.codes.UNAUTHORIZED:
            fresh = await self._tokens.refresh(token)
            if fresh is not None:
                response = await self._request(method, path, fresh, **kwargs)
        if response.is_success:
            return response
        raise UpstreamError(
            f"EHR answered {response.status_code} to {method} {path.split('?')[0]}",
            http_status=response.status_code,
            retry_after=retry_after(response),
            outcome=_json_object(response),
        )

    async def _request(self, method: str, path: str, token: str | None, **kwargs: Any) -> httpx.Response:
        headers = dict(kwargs.pop("headers", None) or {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        try:
            response = await self._http.request(method, path, headers=headers, **kwargs)
        except httpx.HTTPError as exc:
            raise UpstreamError(f"EHR unreachable: {type(exc).__name__}") from None
        return response
