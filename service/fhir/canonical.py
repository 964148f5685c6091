"""Peerway's conformance resources (fhir_profiles/data) as a FHIR server serves them: read, vread, and search by
`url` or `_id`, answered from the stored bytes (built once, never parsed and written again per request)."""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from urllib.parse import urlencode

import fhir_profiles
from service.errors import BadRequest, NotFound

SERVED_TYPES = ("StructureDefinition", "CodeSystem", "ValueSet", "OperationDefinition", "SearchParameter")
SEARCH_PARAMETERS = ("url", "_id", "_count", "_cursor", "_total")
TOTALS = ("none", "estimate", "accurate")  # the total is always given: counting a few files is cheap
DEFAULT_PAGE = 20
MAX_PAGE = 100
_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")


@dataclass(frozen=True)
class Served:
    """One conformance resource as answered: its bytes, and the version the ETag and Last-Modified carry."""

    body: bytes
    version_id: str
    last_updated: datetime
    url: str


@cache
def _served() -> dict[tuple[str, str], Served]:
    """Each artifact of a served type, with meta.versionId (its business `version`, which changes whenever the
    artifact does) and meta.lastUpdated (its `date`) spliced in after its id; the rest is the file's bytes."""
    found: dict[tuple[str, str], Served] = {}
    for resource in fhir_profiles.artifacts():
        key = (resource["resourceType"], resource["id"])
        if key[0] not in SERVED_TYPES:
            continue
        stored = fhir_profiles.artifact_bytes(*key)
        anchor = f'"id": {json.dumps(key[1])},'.encode()
        at = stored.find(anchor)
        if at < 0 or "meta" in resource:  # our files all start the same way; a new one that does not is a bug
            raise ValueError(f"{key[0]}-{key[1]}.json: expected '\"id\": ...,' near the top and no meta")
        last_updated = datetime.fromisoformat(resource["date"]).replace(tzinfo=UTC)
        meta = {"versionId": resource["version"], "lastUpdated": last_updated.isoformat().replace("+00:00", "Z")}
        end = at + len(anchor)
        body = stored[:end] + f'\n  "meta": {json.dumps(meta)},'.encode() + stored[end:]
        found[key] = Served(body, resource["version"], last_updated, resource["url"])
    return found


def check_id(id: str, expression: str = "id") -> str:
    if not _ID.fullmatch(id):
        raise BadRequest(f"{expression}: not a FHIR id (1 to 64 of A-Z a-z 0-9 - .)", expression)
    return id


def read(resource_type: str, id: str, version_id: str | None = None) -> Served:
    """One conformance resource (or that version of it), else a 404 naming it."""
    check_id(id)
    if version_id is not None:
        check_id(version_id, "vid")
    served = _served().get((resource_type, id))
    if served is None or (version_id is not None and version_id != served.version_id):
        wanted = f"{resource_type}/{id}" + (f"/_history/{version_id}" if version_id is not None else "")
        raise NotFound(f"{wanted} is not one of Peerway's conformance resources")
    return served


def search(
    resource_type: str, query: Sequence[tuple[str, str]], base_url: str, lenient: bool = False
) -> tuple[bytes, int]:
    """A searchset Bundle (bytes) of the resources of `resource_type` matching every parameter, and how many
    matched. `url` matches the canonical url (`url|version` that version); `_id` the id; commas mean or."""
    kept = [(name, value) for name, value in query if name in SEARCH_PARAMETERS or not _unknown(name, lenient)]
    count = DEFAULT_PAGE
    after = ""
    candidates = sorted(key[1] for key in _served() if key[0] == resource_type)
    for name, value in kept:
        if name == "_count":
            count = _page_size(value)
        elif name == "_cursor":
            after = _decode_cursor(value)
        elif name == "_total":
            if value not in TOTALS:
                raise BadRequest(f"_total: one of {', '.join(TOTALS)}", "_total")
        else:
            wanted = set(value.split(","))
            candidates = [id for id in candidates if _matches(resource_type, id, name, wanted)]
    page = [id for id in candidates if id > after][:count]
    more = bool(page) and page[-1] != candidates[-1] if count else False
    search_url = f"{base_url}/fhir/{resource_type}"
    base_query = [(n, v) for n, v in kept if n not in ("_cursor",)]
    links = [{"relation": "self", "url": _with_query(search_url, kept)}]
    if more:
        cursor = base64.urlsafe_b64encode(page[-1].encode()).decode().rstrip("=")
        links.append({"relation": "next", "url": _with_query(search_url, [*base_query, ("_cursor", cursor)])})
    head = json.dumps(
        {"resourceType": "Bundle", "type": "searchset", "total": len(candidates), "link": links},
        separators=(",", ":"),
    ).encode()
    if not page:
        return head, len(candidates)
    entries = b",".join(
        b'{"fullUrl":'
        + json.dumps(f"{search_url}/{id}").encode()
        + b',"resource":'
        + _served()[(resource_type, id)].body
        + b',"search":{"mode":"match"}}'
        for id in page
    )
    return head[:-1] + b',"entry":[' + entries + b"]}", len(candidates)


def _unknown(name: str, lenient: bool) -> bool:
    if lenient:
        return True  # dropped: Prefer: handling=lenient asks us to ignore what we do not support
    raise BadRequest(
        f"search parameter {name[:64]!r} is not supported here (supported: {', '.join(SEARCH_PARAMETERS)})", name[:64]
    )


def _matches(resource_type: str, id: str, name: str, wanted: set[str]) -> bool:
    if name == "_id":
        return id in wanted
    served = _served()[(resource_type, id)]
    return any(w in (served.url, f"{served.url}|{served.version_id}") for w in wanted)


def _page_size(value: str) -> int:
    if not value.isdigit() or len(value) > 6:
        raise BadRequest(f"_count: {value[:20]!r} is not a whole number of 0 to {MAX_PAGE}", "_count")
    return min(int(value), MAX_PAGE)


def _decode_cursor(value: str) -> str:
    try:
        decoded = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        decoded = ""
    if not _ID.fullmatch(decoded):
        raise BadRequest("_cursor: not a cursor this server gave out", "_cursor")
    return decoded


def _with_query(url: str, query: Sequence[tuple[str, str]]) -> str:
    return f"{url}?{urlencode(query)}" if query else url
