"""The one client for a site's EHR: reads, searches with paging, operations and idempotent writes.

Never called inside a database transaction (the workers call it between transactions). One policy for every
request: the site's token provider authorizes it; a 401 gets a fresh token once and the request is made once
more (reads and writes alike); any other answer that is not a success becomes an UpstreamError carrying the
HTTP status, Retry-After and the EHR's OperationOutcome, so the caller can decide: retry, or dead letter. Only
paths under the configured base are requested: a `next` link that leaves it is refused, and hosts named in
notifications are never contacted. What the answers mean is service/fhir's business (ehr_answers.py).
"""

from __future__ import annotations

import email.utils
import logging
import posixpath
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, unquote

import httpx

from service.ehr.connection import WriteMode
from service.ehr.tokens import StaticToken, TokenProvider
from service.errors import UpstreamError
from service.fhir.batch import batch_answers, put_batch, reference_of
from service.fhir.ehr_answers import age, is_searchset, next_link, search_matches

FHIR_JSON = "application/fhir+json"
MAX_SEARCH_PAGES = 50
MAX_SEARCH_ENTRIES = 5000
MAX_SEARCH_BYTES = 20_000_000
# Ask the EHR to refuse a search it cannot do as asked (an unknown or ignored parameter) instead of answering a
# wider one: a search by patient that drops the patient would answer everyone's data. (Sent with the complete
# searches whose answer replaces what Peerway holds; the recovery scan keeps its lenient operator-set params.)
STRICT = {"Prefer": "handling=strict"}
# Answers that mean "this server does not do that" (an operation it does not offer).
NOT_OFFERED = frozenset({400, 404, 405, 501})
GONE = frozenset({404, 410})

SearchParams = Mapping[str, str] | Sequence[tuple[str, str]]

log = logging.getLogger(__name__)


def fhir_json(version: str | None) -> str:
    """The FHIR JSON media type, with the fhirVersion parameter (major.minor) when the EHR's version is known."""
    if not version:
        return FHIR_JSON
    return f"{FHIR_JSON}; fhirVersion={'.'.join(version.split('.')[:2])}"


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


@dataclass
class _Budget:
    """What one search has read so far, against the caps."""

    pages: int = 0
    entries: int = 0
    size: int = 0

    def spend(self, size: int, entries: int) -> None:
        self.pages, self.entries, self.size = self.pages + 1, self.entries + entries, self.size + size

    def spent(self) -> bool:
        return self.pages >= MAX_SEARCH_PAGES or self.entries >= MAX_SEARCH_ENTRIES or self.size >= MAX_SEARCH_BYTES

    def limits(self) -> str:
        return f"{MAX_SEARCH_PAGES} pages, {MAX_SEARCH_ENTRIES} entries or {MAX_SEARCH_BYTES} bytes"


class BatchNotTaken(UpstreamError):
    """The EHR answered a batch request, but not with an answer per entry: nothing is known written."""


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


def _json_object(response: httpx.Response) -> dict[str, Any] | None:
    try:
        data = response.json()
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


class _NoCookies(httpx.Cookies):
    """A cookie jar that keeps nothing (and so sends nothing)."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None


class _Http(httpx.AsyncClient):
    """httpx's client without its cookie jar: a FHIR REST API is stateless and each request carries its bearer
    token, so what an EHR (or a proxy before it) sets in a cookie has nothing to do on the next request, and reading
    every answer's cookies into a urllib request and jar was some 8 % of a worker's CPU per delivered Encounter."""

    _none = _NoCookies()

    @property
    def cookies(self) -> httpx.Cookies:
        return self._none

    @cookies.setter
    def cookies(self, cookies: object) -> None:
        return None


class EhrClient:
    """One site's EHR: one HTTP connection pool, one token provider, one timeout, one FHIR version spoken."""

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
        self.base_url = base_url.rstrip("/") + "/"
        self._tokens: TokenProvider = tokens if tokens is not None else StaticToken(bearer_token)
        self._media_type = fhir_json(fhir_version)
        self._http = _Http(
            base_url=self.base_url, headers={"Accept": self._media_type}, timeout=timeout, transport=transport
        )

    async def aclose(self) -> None:
        await self._http.aclose()
        await self._tokens.aclose()

    # --- reads -------------------------------------------------------------------------------------------------

    async def read(self, resource_type: str, resource_id: str) -> dict[str, Any] | None:
        """GET [type]/[id]: the current version, or None when the EHR says it does not exist (404 / 410)."""
        path = f"{resource_type}/{quote(resource_id, safe='')}"
        response = await self._send("GET", path, accept=GONE)
        return None if response.status_code in GONE else self._resource(response, "GET", path)

    async def capability(self) -> dict[str, Any]:
        """GET [base]/metadata: the EHR's CapabilityStatement."""
        return self._resource(await self._send("GET", "metadata"), "GET", "metadata")

    async def operation(self, path: str, params: Mapping[str, str] | None = None) -> dict[str, Any] | None:
        """GET [base]/<path> for an operation ($status, $events); None when the EHR does not offer it (400/404/
        405/501)."""
        response = await self._send("GET", path, params=dict(params or {}), accept=NOT_OFFERED)
        return None if response.status_code in NOT_OFFERED else self._resource(response, "GET", path)

    async def pages(
        self, resource_type: str, params: SearchParams, *, complete: bool = False
    ) -> AsyncIterator[dict[str, Any]]:
        """GET [type]?params, then its `next` links: each searchset page, at most MAX_SEARCH_PAGES pages,
        MAX_SEARCH_ENTRIES entries and MAX_SEARCH_BYTES in all. An answer that is no searchset Bundle, or a `next`
        link seen before (a loop), is an UpstreamError. Past a cap the pages stop there, or, when `complete` (the
        caller replaces what it holds with the answer), an UpstreamError: a truncated read is a failed read."""
        budget = _Budget()
        response = await self._send("GET", resource_type, params=params, headers=STRICT if complete else {})
        bundle = self._page(response, resource_type, budget)
        seen: set[str] = set()
        while True:
            yield bundle
            link = next_link(bundle)
            if link is None:
                return
            if budget.spent():
                if complete:
                    raise UpstreamError(f"the EHR's answer to {resource_type} exceeds {budget.limits()}")
                log.warning("search of %s stopped at %s", resource_type, budget.limits())
                return
            key = str(httpx.URL(link))
            if key in seen:
                raise UpstreamError(f"the EHR's next links for {resource_type} repeat (a paging loop)")
            seen.add(key)
            bundle = self._page(await self._send("GET", self._on_base(link)), resource_type, budget)

    async def page(self, url: str) -> dict[str, Any]:
        """A next-page link, followed only when it stays on the EHR's base (our token never leaves it)."""
        return self._resource(await self._send("GET", self._on_base(url)), "GET", url)

    def _on_base(self, url: str) -> str:
        """The URL, refused unless it is under the EHR's base once its dot segments are resolved (httpx resolves
        `/fhir/../admin` to `/admin` before sending, so the raw text is not what would be requested)."""
        base, target = httpx.URL(self.base_url), httpx.URL(url)
        path = posixpath.normpath(unquote(target.path)) + ("/" if target.path.endswith("/") else "")
        if (
            (target.scheme, target.host, target.port) != (base.scheme, base.host, base.port)
            or not path.startswith(base.path)
            or not target.path.startswith(base.path)
        ):
            raise UpstreamError("the EHR's next link leaves its base URL", http_status=400)
        return str(target)

    def _page(self, response: httpx.Response, resource_type: str, budget: _Budget) -> dict[str, Any]:
        bundle = self._resource(response, "GET", resource_type)
        if not is_searchset(bundle):
            raise UpstreamError(f"the EHR answered a search of {resource_type} with something that is no searchset")
        budget.spend(len(response.content), len(search_matches(bundle)))
        return bundle

    async def search(self, resource_type: str, params: SearchParams) -> list[dict[str, Any]]:
        """The resources matching GET [type]?params (search mode "match"), over every page; a search the caps cut
        short is an UpstreamError, never a partial answer."""
        return [
            found
            async for bundle in self.pages(resource_type, params, complete=True)
            for found in search_matches(bundle)
        ]

    # --- writes ------------------------------------------------------------------------------------------------

    async def put(self, resource: dict[str, Any]) -> dict[str, Any]:
        """PUT [type]/[id]: creates the resource under our id, or replaces it (update-as-create)."""
        return (await self.update(resource)).resource

    async def update(self, resource: dict[str, Any]) -> Written:
        path = f"{resource['resourceType']}/{quote(str(resource['id']), safe='')}"
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

    async def put_batch(self, resources: Sequence[dict[str, Any]]) -> list[UpstreamError | None]:
        """PUT each resource at our id, all in one FHIR batch request. Per resource, in order: None when the EHR
        wrote it, else the UpstreamError its entry's answer makes (that status, that OperationOutcome). Raises
        UpstreamError when the batch as a whole failed, or its answer cannot be read entry by entry: then nothing
        is known written (the caller writes them one by one; PUT at our id makes a second write harmless)."""
        base = self.base_url.rstrip("/")  # POSTed to [base] itself (no trailing slash)
        response = await self._send(
            "POST", base, json=put_batch(resources, base), headers={"Content-Type": self._media_type}
        )
        try:
            answer = _json_object(response)
        except RecursionError:  # JSON nested deeper than the parser goes
            answer = None
        answers = batch_answers(answer, [reference_of(resource) for resource in resources])
        if answers is None:
            raise BatchNotTaken("EHR answered a batch with something that is not its batch-response, entry by entry")
        return [
            None
            if answer.written
            else UpstreamError(
                f"EHR answered {answer.status} to PUT {resource['resourceType']}/{resource['id']} in a batch",
                http_status=answer.status,
                outcome=answer.outcome,
            )
            for resource, answer in zip(resources, answers, strict=True)
        ]

    async def place(self, resource: dict[str, Any], identifier: str, *, mode: WriteMode, mutable: bool) -> Placed:
        """Write the resource so that exactly one copy of it is at the EHR, in the EHR's write mode.

        "put" (and "batch", for a resource written on its own): PUT [type]/[our id]. "conditional-create": POST
        with If-None-Exist on `identifier` (system|value); when it was already there, a `mutable` resource is
        updated at the EHR's id. When several carry the
        identifier (a 412) or a search after our create finds another, the oldest is kept, the others (our own
        duplicates, from a race) are deleted, and the answer says so.
        """
        resource_type = resource["resourceType"]
        if mode in ("put", "batch"):  # the answer is not needed: the resource is at our id (no parse per write)
            path = f"{resource_type}/{quote(str(resource['id']), safe='')}"
            await self._send("PUT", path, json=resource, headers={"Content-Type": self._media_type})
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
        kept = min(matches, key=age)
        extras = [str(m["id"]) for m in matches if m["id"] != kept["id"]]
        removed = [extra for extra in extras if await self._delete_quietly(resource_type, extra)]
        if mutable and ours != kept["id"]:
            await self.update({**resource, "id": kept["id"]})
        placed = Placed(f"{resource_type}/{kept['id']}", tuple(extras), tuple(removed))
        if placed.note:
            log.warning("%s", placed.note)
        return placed

    async def delete(self, resource_type: str, resource_id: str) -> None:
        await self._send("DELETE", f"{resource_type}/{quote(resource_id, safe='')}")

    async def _delete_quietly(self, resource_type: str, resource_id: str) -> bool:
        try:
            await self.delete(resource_type, resource_id)
        except UpstreamError as exc:
            log.warning("could not remove duplicate %s/%s: %s", resource_type, resource_id, exc.diagnostics)
            return False
        return True

    async def _write(
        self, method: str, path: str, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> Written:
        response = await self._send(
            method, path, json=body, headers={"Content-Type": self._media_type, **(headers or {})}
        )
        return Written(status=response.status_code, resource=_json_object(response) or {})

    # --- the wire ----------------------------------------------------------------------------------------------

    async def _send(
        self, method: str, path: str, *, accept: frozenset[int] = frozenset(), **kwargs: Any
    ) -> httpx.Response:
        """The request, authorized; once more with a fresh token after a 401. A success, or an answer in
        `accept`, is returned; any other is an UpstreamError."""
        token = await self._tokens.token()
        response = await self._request(method, path, token, **kwargs)
        if response.status_code == httpx.codes.UNAUTHORIZED:
            fresh = await self._tokens.refresh(token)
            if fresh is not None:
                response = await self._request(method, path, fresh, **kwargs)
        if response.is_success or response.status_code in accept:
            return response
        raise UpstreamError(
            f"EHR answered {response.status_code} to {method} {self._named(path)}",
            http_status=response.status_code,
            retry_after=retry_after(response),
            outcome=_json_object(response),
        )

    async def _request(self, method: str, path: str, token: str | None, **kwargs: Any) -> httpx.Response:
        headers = dict(kwargs.pop("headers", None) or {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        try:
            return await self._http.request(method, path, headers=headers, **kwargs)
        except httpx.HTTPError as exc:
            raise UpstreamError(f"EHR unreachable: {type(exc).__name__}") from None

    def _resource(self, response: httpx.Response, method: str, path: str) -> dict[str, Any]:
        """A read's answer: a JSON object, or an UpstreamError saying what came instead."""
        try:
            data = response.json()
        except (ValueError, RecursionError):  # RecursionError: JSON nested deeper than the parser goes
            raise UpstreamError(f"EHR answered {method} {self._named(path)} with something that is not JSON") from None
        if not isinstance(data, dict):
            raise UpstreamError(f"EHR answered {method} {self._named(path)} with JSON that is not a resource")
        return data

    def _named(self, path: str) -> str:
        """A request as messages name it: its path under the base, without the query (which may name people)."""
        named = path.split("?")[0].removeprefix(self.base_url)
        return "[base]" if named == self.base_url.rstrip("/") else named
