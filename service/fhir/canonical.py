"""Peerway's conformance resources (fhir_profiles/data) as a FHIR server serves them: read, vread, and search by
`url` or `_id`, answered from the stored bytes (built once, never parsed and written again per request)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any

import fhir_profiles
from service.errors import BadRequest, NotFound
from service.fhir.ids import ID_RULE, is_fhir_id
from service.fhir.search import CONFORMANCE_TYPES

SERVED_TYPES = CONFORMANCE_TYPES


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
    if not is_fhir_id(id):
        raise BadRequest(f"{expression}: {ID_RULE}", expression)
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


def keys(resource_type: str, criteria: dict[str, tuple[str, ...]]) -> list[tuple[datetime, str]]:
    """(lastUpdated, id) of each served resource of the type matching every criterion (`url`: the canonical url,
    or `url|version` that version; `_id`: the id; each a tuple of comma-split values meaning or), in that order."""
    return sorted(
        (served.last_updated, id)
        for (type_, id), served in _served().items()
        if type_ == resource_type and all(_matches(type_, id, name, set(v)) for name, v in criteria.items())
    )


@cache
def parsed(resource_type: str, id: str) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(_served()[(resource_type, id)].body)
    return parsed


def _matches(resource_type: str, id: str, name: str, wanted: set[str]) -> bool:
    if name == "_id":
        return id in wanted
    served = _served()[(resource_type, id)]
    return any(w in (served.url, f"{served.url}|{served.version_id}") for w in wanted)
