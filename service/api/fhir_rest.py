"""What every FHIR REST interaction shares (R4 http.html): JSON only (406 for another format, 415 for a body
that is not FHIR JSON), Prefer (return=, handling=), If-Match, and the searchset answer with paging links."""

from __future__ import annotations

import re
from typing import Any, Literal
from urllib.parse import parse_qsl

from fastapi import Request, Response

from service.api.deps import read_body
from service.api.responses import FhirResponse, version_headers
from service.api.text import holds_nul
from service.app.search import Found
from service.errors import BadRequest, NotAcceptable, UnsupportedMediaType
from service.fhir.build import searchset, subsetted
from service.fhir.contact_changes import Change, outcome, warning_header
from service.fhir.parse import load_json
from service.fhir.search import MANDATORY_ELEMENTS, SearchRequest, parse_search
from service.settings import Settings

JSON_TYPES = frozenset({"application/fhir+json", "application/json", "application/json+fhir"})
_FORMAT_ALIASES = frozenset({"json", *JSON_TYPES})
_ANY = frozenset({"*/*", "application/*"})
_WEAK_ETAG = re.compile(r'^(W/)?"(?P<version>[0-9]{1,9})"$')

Return = Literal["minimal", "representation", "OperationOutcome"]


def _media_type(value: str) -> str:
    return value.split(";", 1)[0].strip().lower()


async def json_only(request: Request) -> None:
    """A route dependency: _format or Accept asking for anything but FHIR JSON (XML, Turtle) is a 406."""
    # No query string (most requests): nothing to parse.
    requested = request.query_params.get("_format") if request.scope.get("query_string") else None
    if requested is not None:
        json_format(requested)
    accept = request.headers.get("accept")
    if requested is None and accept:
        offered = [kind for kind, quality in _accepted(accept) if quality > 0]
        if not any(kind in JSON_TYPES or kind in _ANY for kind in offered):
            raise NotAcceptable(f"Accept: {accept!r} — this server answers in application/fhir+json only")


def json_format(requested: str) -> None:
    """_format (in the URL, or a POST search's form) asking for anything but FHIR JSON is a 406."""
    if _media_type(requested) not in _FORMAT_ALIASES:
        raise NotAcceptable(f"_format={requested!r}: this server answers in FHIR JSON only", "_format")


def _accepted(accept: str) -> list[tuple[str, float]]:
    """Accept's media types with their quality (q=0 means "not this")."""
    kinds = []
    for part in accept.split(","):
        kind, *params = (p.strip() for p in part.split(";"))
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        kinds.append((kind.lower(), quality))
    return kinds


async def fhir_body(request: Request, settings: Settings, resource_type: str) -> dict[str, Any]:
    """The request body as a FHIR JSON resource of `resource_type`: another media type is a 415."""
    content_type = request.headers.get("content-type")
    if content_type is None or _media_type(content_type) not in JSON_TYPES:
        raise UnsupportedMediaType(
            f"Content-Type {content_type!r}: send the {resource_type} as application/fhir+json", "Content-Type"
        )
    return load_json(await read_body(request, settings), resource_type)


def json_unless_declared_otherwise(request: Request, what: str) -> None:
    """The feeds' rule (a Da Vinci message, a subscription notification): a body declared as another format (FHIR
    XML, a form, text) is a 415 naming Content-Type, before it is read; one that declares no format is read as
    JSON, as EHR interface engines often send it."""
    content_type = request.headers.get("content-type")
    if content_type is not None and _media_type(content_type) not in JSON_TYPES:
        raise UnsupportedMediaType(
            f"Content-Type {content_type!r}: send the {what} as application/fhir+json", "Content-Type"
        )


def _prefer(request: Request) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for header in request.headers.getlist("prefer"):
        for part in header.split(","):
            preference = part.split(";")[0]  # RFC 7240: parameters after ";" refine a preference we do not read
            name, _, value = preference.strip().partition("=")
            pairs[name.strip().lower()] = value.strip().strip('"')
    return pairs


def lenient(request: Request) -> bool:
    """Prefer: handling=lenient asks the server to leave out parameters it does not serve (default: strict)."""
    return _prefer(request).get("handling") == "lenient"


def preferred_return(request: Request) -> Return:
    value = _prefer(request).get("return", "representation").lower()
    if value == "minimal":
        return "minimal"
    return "OperationOutcome" if value == "operationoutcome" else "representation"


def if_match(request: Request) -> int | None:
    """The version named by If-Match (W/"3" or "3"), or None without the header."""
    header = request.headers.get("if-match")
    if header is None:
        return None
    match = _WEAK_ETAG.match(header.strip())
    if match is None:
        raise BadRequest(f'If-Match {header!r}: give the ETag of the version you read, e.g. W/"3"', "If-Match")
    return int(match["version"])


def written(
    request: Request,
    settings: Settings,
    resource: dict[str, Any],
    *,
    created: bool,
    changes: tuple[Change, ...] = (),
    matched: bool = False,
) -> Response:
    """The answer to a create or update: Location (the version written, or matched by If-None-Exist), ETag and
    Last-Modified, and the body the client preferred (the resource, nothing, or an OperationOutcome).

    What of the sent resource was not kept (`changes`) is said either way: as warning issues of the
    OperationOutcome (Prefer: return=OperationOutcome), else in a Warning header beside the resource."""
    status = 201 if created else 200
    meta = resource["meta"]
    location = f"{settings.base_url}/fhir/{resource['resourceType']}/{resource['id']}/_history/{meta['versionId']}"
    # Location on every answer, also a conditional create's 200 or an update: a return=minimal client learns
    # from it which resource (and version) the write is.
    headers = {"Location": location, "Content-Location": location}
    headers |= version_headers(resource)
    preference = preferred_return(request)
    warning = warning_header(changes) if preference != "OperationOutcome" else None
    if warning is not None:
        headers["Warning"] = warning
    if preference == "minimal":
        return Response(status_code=status, headers=headers)
    if preference == "OperationOutcome":
        verb = "created" if created else "updated"
        said = f"{resource['resourceType']}/{resource['id']} {verb}"
        if matched:
            said = f"{resource['resourceType']}/{resource['id']} matched an earlier write: nothing written"
        return FhirResponse(outcome(said, changes), status, headers)
    return FhirResponse(resource, status, headers)


def search_request(request: Request, resource_type: str) -> SearchRequest:
    return parse_search(resource_type, request.query_params.multi_items(), lenient=lenient(request))


FORM = "application/x-www-form-urlencoded"
MAX_FORM_FIELDS = 1000


async def search_form(request: Request, settings: Settings, resource_type: str) -> SearchRequest:
    """POST [base]/[type]/_search (FHIR R4 http.html#search): the parameters in a form body, with any in the URL,
    as one search; answered as the GET search is (its paging links are GET URLs holding the criteria). Another
    media type is a 415, a form larger than a request head may be a 413; one that is not UTF-8, holds U+0000,
    has too many fields or asks for another _format than JSON is a 4xx."""
    content_type = request.headers.get("content-type")
    if content_type is None or _media_type(content_type) != FORM:
        raise UnsupportedMediaType(
            f"Content-Type {content_type!r}: send the search parameters as {FORM}", "Content-Type"
        )
    # No larger than a request head may be (PEERWAY_MAX_HEADER_BYTES): what a GET search could say, and the
    # conformance types' searches are public, so a caller without a token can make Peerway read no more.
    body = await read_body(request, settings, limit=settings.max_header_bytes)
    try:
        items = parse_qsl(
            body.decode("utf-8"),
            keep_blank_values=True,
            strict_parsing=False,
            errors="strict",
            max_num_fields=MAX_FORM_FIELDS,
        )
    except UnicodeDecodeError:
        raise BadRequest("the search form is not UTF-8 (percent-encoded UTF-8 included)", "body") from None
    except ValueError:
        raise BadRequest(f"the search form has more than {MAX_FORM_FIELDS} fields", "body") from None
    for name, value in items:
        if holds_nul(name) or holds_nul(value):
            raise BadRequest(f"body.{name}: text may not contain U+0000", f"body.{name}")
        if name == "_format":
            json_format(value)
    return parse_search(resource_type, [*request.query_params.multi_items(), *items], lenient=lenient(request))


def search_answer(settings: Settings, search: SearchRequest, found: Found) -> FhirResponse:
    """The searchset page with self/next/previous links (opaque cursors) and, when counted, the total."""
    base = f"{settings.base_url}/fhir/{search.resource_type}?"
    links = [("self", base + search.query(search.cursor))]
    if found.next is not None:
        links.append(("next", base + search.query(found.next)))
    if found.previous is not None:
        links.append(("previous", base + search.query(found.previous)))
    warnings = [f"{name} is not supported here and was ignored (Prefer: handling=lenient)" for name in search.ignored]
    entries = () if search.summary_count else found.resources
    if search.elements:
        kept = {*search.elements, *MANDATORY_ELEMENTS[search.resource_type]}
        entries = [subsetted(resource, kept) for resource in entries]
    return FhirResponse(searchset(entries, settings.base_url, links, found.total, warnings), pretty=search.pretty)
