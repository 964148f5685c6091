"""Peerway's FHIR artifacts (the JSON in fhir_profiles/data) and lookups in Peerway's own terminology."""

from __future__ import annotations

import copy
import json
from functools import cache
from importlib import resources
from typing import Any

CANONICAL = "https://peerway.github.io/fhir"

DATA_CATEGORY_SYSTEM = f"{CANONICAL}/CodeSystem/data-category"
DATA_CATEGORY_VALUESET = f"{CANONICAL}/ValueSet/data-category"
PEER_CONTACT_KIND_SYSTEM = f"{CANONICAL}/CodeSystem/peer-contact-kind"
PEER_CONTACT_KIND_VALUESET = f"{CANONICAL}/ValueSet/peer-contact-kind"
PARTICIPANT_ROLE_SYSTEM = f"{CANONICAL}/CodeSystem/participant-role"
PARTICIPANT_ROLE_VALUESET = f"{CANONICAL}/ValueSet/participant-role"
PEER_CONTACT_PROFILE = f"{CANONICAL}/StructureDefinition/peer-contact"
CONTACT_IDENTIFIER_SYSTEM = f"{CANONICAL}/sid/peer-contact"
PEER_IDENTIFIER_SYSTEM = f"{CANONICAL}/sid/peer-supporter"

# Matching peers with clients: a peer is a Practitioner + a PractitionerRole (profile peer-supporter-role).
PEER_STATUS_SYSTEM = f"{CANONICAL}/CodeSystem/peer-status"
PEER_STATUS_VALUESET = f"{CANONICAL}/ValueSet/peer-status"
SUPPORT_KIND_SYSTEM = f"{CANONICAL}/CodeSystem/support-kind"
SUPPORT_KIND_VALUESET = f"{CANONICAL}/ValueSet/support-kind"
AGE_BAND_SYSTEM = f"{CANONICAL}/CodeSystem/age-band"
AGE_BAND_VALUESET = f"{CANONICAL}/ValueSet/age-band"
REMATCH_REASON_SYSTEM = f"{CANONICAL}/CodeSystem/rematch-reason"
REMATCH_REASON_VALUESET = f"{CANONICAL}/ValueSet/rematch-reason"
EPISODE_END_REASON_SYSTEM = f"{CANONICAL}/CodeSystem/episode-end-reason"
EPISODE_END_REASON_VALUESET = f"{CANONICAL}/ValueSet/episode-end-reason"
EPISODE_STATE_SYSTEM = f"{CANONICAL}/CodeSystem/episode-state"
ASSIGNMENT_END_SYSTEM = f"{CANONICAL}/CodeSystem/assignment-end"
PEER_SUPPORTER_ROLE_PROFILE = f"{CANONICAL}/StructureDefinition/peer-supporter-role"
# Outcomes (issue 17): one Measure per indicator, evaluated by Measure/$evaluate-measure (service/fhir/measure.py).
MEASURE_BASE = f"{CANONICAL}/Measure"
# Safety-net alerts (issue 17): their kinds, and the identifier of a Flag Peerway writes to an EHR for one.
ALERT_KIND_SYSTEM = f"{CANONICAL}/CodeSystem/alert-kind"
ALERT_IDENTIFIER_SYSTEM = f"{CANONICAL}/sid/alert"
# Extension urls. On PractitionerRole, except EXT_AGE_BAND (on Practitioner).
EXT_PEER_STATUS = f"{CANONICAL}/StructureDefinition/peer-status"  # valueCode, ValueSet peer-status
EXT_AGE_BAND = f"{CANONICAL}/StructureDefinition/peer-age-band"  # valueCode, ValueSet age-band
EXT_INTEREST = f"{CANONICAL}/StructureDefinition/peer-interest"  # valueString, repeats
EXT_NEIGHBOURHOOD = f"{CANONICAL}/StructureDefinition/peer-neighbourhood"  # valueString
EXT_WEEKLY_HOURS = f"{CANONICAL}/StructureDefinition/peer-weekly-hours"  # valueDecimal
EXT_CASELOAD_CAP = f"{CANONICAL}/StructureDefinition/peer-caseload-cap"  # valuePositiveInt
# Complex: sub-extensions "min-age" (valueInteger 0..1), "max-age" (valueInteger 0..1), "gender" (valueCode 0..*).
EXT_CLIENT_PREFERENCE = f"{CANONICAL}/StructureDefinition/peer-client-preference"

# The value[x] of a CodeSystem concept property: valueCode/valueString -> str, valueBoolean -> bool,
# valueInteger -> int, valueDecimal -> float, valueCoding -> the Coding as a dict.
PropertyValue = str | bool | int | float | dict[str, Any]


@cache
def _loaded() -> dict[tuple[str, str], dict[str, Any]]:
    """Every data/*.json, keyed by (resourceType, id). Read once; callers get copies."""
    loaded: dict[tuple[str, str], dict[str, Any]] = {}
    folder = resources.files("fhir_profiles") / "data"
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".json"):
            continue
        resource = json.loads(entry.read_text(encoding="utf-8"))
        key = (resource["resourceType"], resource["id"])
        # The file name is how artifact() finds a resource: a mismatch is a packaging bug, fail loudly.
        if entry.name != f"{key[0]}-{key[1]}.json":
            raise ValueError(f"{entry.name} holds {key[0]}/{key[1]}; name it {key[0]}-{key[1]}.json")
        loaded[key] = resource
    return loaded


@cache
def _stored() -> dict[tuple[str, str], bytes]:
    """The bytes of every data/*.json as stored, keyed by (resourceType, id)."""
    folder = resources.files("fhir_profiles") / "data"
    return {key: (folder / f"{key[0]}-{key[1]}.json").read_bytes() for key in _loaded()}


def artifact_bytes(resource_type: str, id: str) -> bytes:
    """One artifact's file exactly as stored (for serving it without parsing and writing it again)."""
    try:
        return _stored()[(resource_type, id)]
    except KeyError:
        raise KeyError(f"no fhir_profiles/data/{resource_type}-{id}.json") from None


@cache
def _by_url() -> dict[str, dict[str, Any]]:
    return {r["url"]: r for r in _loaded().values() if "url" in r}


def artifact(resource_type: str, id: str) -> dict[str, Any]:
    """One artifact, from fhir_profiles/data/<resource_type>-<id>.json (a copy: safe to change)."""
    try:
        return copy.deepcopy(_loaded()[(resource_type, id)])
    except KeyError:
        raise KeyError(f"no fhir_profiles/data/{resource_type}-{id}.json") from None


def artifacts() -> list[dict[str, Any]]:
    """Every artifact in fhir_profiles/data (copies), in file-name order."""
    return [copy.deepcopy(r) for r in _loaded().values()]


def canonical_resource(url: str) -> dict[str, Any]:
    """The artifact whose canonical url is `url` (a copy)."""
    return copy.deepcopy(_resource_at(url))


def _resource_at(url: str, resource_type: str | None = None) -> dict[str, Any]:
    resource = _by_url().get(url)
    if resource is None or (resource_type is not None and resource["resourceType"] != resource_type):
        raise KeyError(f"{url} is not one of Peerway's {resource_type or 'artifact'}s")
    return resource


@cache
def _concepts(system_url: str) -> dict[str, dict[str, Any]]:
    """Every concept of one of our CodeSystems by code, nested concepts included."""
    found: dict[str, dict[str, Any]] = {}
    pending = list(_resource_at(system_url, "CodeSystem").get("concept", []))
    while pending:
        concept = pending.pop()
        found[concept["code"]] = concept
        pending.extend(concept.get("concept", []))
    return found


def codes(system_url: str) -> frozenset[str]:
    """Every code of one of our CodeSystems, nested (child) concepts included. KeyError if not ours."""
    return frozenset(_concepts(system_url))


def check_codes(system_url: str, code: str) -> bool:
    """Whether `code` is a code of our CodeSystem `system_url`. KeyError if the system is not ours."""
    return code in _concepts(system_url)


def display(system_url: str, code: str) -> str:
    """The display of a code of one of our CodeSystems. KeyError for an unknown system or code."""
    concept = _concepts(system_url).get(code)
    if concept is None:
        raise KeyError(f"{code!r} is not a code of {system_url}")
    return str(concept["display"])


def concept_property(system_url: str, code: str, property_code: str) -> PropertyValue | None:
    """The value of one property of a concept (e.g. data-category's explicit-only), None when it has none."""
    concept = _concepts(system_url).get(code)
    if concept is None:
        raise KeyError(f"{code!r} is not a code of {system_url}")
    for prop in concept.get("property", []):
        if prop["code"] == property_code:
            for key in prop:
                if key.startswith("value"):
                    value: PropertyValue = prop[key]
                    return copy.deepcopy(value)
    return None


@cache
def valueset_codes(valueset_url: str) -> frozenset[tuple[str, str]]:
    """The (system, code) pairs of one of our ValueSets, expanded from its compose.

    Only what our ValueSets use is supported: include/exclude of one of our CodeSystems, whole or by
    enumerated concepts. A filter, an imported ValueSet or another publisher's system raises ValueError.
    """
    compose = _resource_at(valueset_url, "ValueSet")["compose"]

    def pairs(part: dict[str, Any]) -> set[tuple[str, str]]:
        if "filter" in part or "valueSet" in part or "system" not in part:
            raise ValueError(f"{valueset_url}: only whole systems or enumerated concepts can be expanded")
        system = part["system"]
        if "concept" in part:
            return {(system, c["code"]) for c in part["concept"]}
        try:
            return {(system, code) for code in codes(system)}
        except KeyError:
            raise ValueError(f"{valueset_url}: cannot expand {system}, not one of ours") from None

    included: set[tuple[str, str]] = set()
    for part in compose.get("include", []):
        included |= pairs(part)
    for part in compose.get("exclude", []):
        included -= pairs(part)
    return frozenset(included)
