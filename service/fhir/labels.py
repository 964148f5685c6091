"""Security labels as the consent engine compares them: (system, code) with the system in its canonical form.

EHRs write the same label several ways: the v3 code systems by OID (urn:oid:2.16.840.1.113883.5.25 is
v3-Confidentiality), by the pre-terminology.hl7.org URIs, or with no system at all; and DS4P puts labels inline
on elements (extension-inline-sec-label) instead of meta.security. The engine matches labels exactly, so each is
mapped here to the one form it knows. Fail closed: a restricted code (R, V, SUD, PSY...) under no system or an
unknown one is read as that restricted label, never as an unknown label a general permit lets through.
"""

from __future__ import annotations

from typing import Any

from consent.categories import ACT_CODE_SYSTEM, ACT_REASON_SYSTEM, CONFIDENTIALITY_SYSTEM, RESTRICTIVE

INLINE_LABEL = "http://hl7.org/fhir/uv/security-label-ds4p/StructureDefinition/extension-inline-sec-label"
OBSERVATION_VALUE_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue"
CANONICAL_SYSTEMS = {
    "urn:oid:2.16.840.1.113883.5.25": CONFIDENTIALITY_SYSTEM,
    "http://hl7.org/fhir/v3/Confidentiality": CONFIDENTIALITY_SYSTEM,
    "urn:oid:2.16.840.1.113883.5.4": ACT_CODE_SYSTEM,
    "http://hl7.org/fhir/v3/ActCode": ACT_CODE_SYSTEM,
    "urn:oid:2.16.840.1.113883.5.8": ACT_REASON_SYSTEM,
    "http://hl7.org/fhir/v3/ActReason": ACT_REASON_SYSTEM,
    "urn:oid:2.16.840.1.113883.5.1063": OBSERVATION_VALUE_SYSTEM,
    "http://hl7.org/fhir/v3/ObservationValue": OBSERVATION_VALUE_SYSTEM,
}
KNOWN_SYSTEMS = frozenset(CANONICAL_SYSTEMS.values())
# A restricted code without a system we know: the restricted label it names (its code system is implied).
_RESTRICTED_BY_CODE = {label.code: label.system for label in RESTRICTIVE}
MAX_DEPTH = 64  # deeper nesting is no resource an EHR writes: refused (ValueError) rather than half read


def canonical_label(system: object, code: object) -> tuple[str, str] | None:
    """One label in canonical form; None when it has no code."""
    if not isinstance(code, str) or not code.strip():
        return None
    code = code.strip()
    named = system.strip().rstrip("/") if isinstance(system, str) else ""
    canonical = CANONICAL_SYSTEMS.get(named, named)
    if canonical not in KNOWN_SYSTEMS and code in _RESTRICTED_BY_CODE:
        return _RESTRICTED_BY_CODE[code], code
    return canonical, code


def security_labels(resource: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    """The resource's labels, meta.security and DS4P inline labels alike, canonical, sorted, each once."""
    meta = resource.get("meta")
    codings: list[Any] = list(meta.get("security") or []) if isinstance(meta, dict) else []
    codings += _inline(resource)
    found = set()
    for coding in codings:
        if isinstance(coding, dict) and (label := canonical_label(coding.get("system"), coding.get("code"))):
            found.add(label)
    return tuple(sorted(found))


def _inline(resource: dict[str, Any]) -> list[Any]:
    """valueCoding of every inline security label extension, anywhere in the resource (iteratively, so a hostile
    nesting cannot exhaust the stack)."""
    codings: list[Any] = []
    stack: list[tuple[object, int]] = [(resource, 0)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ValueError("a resource nested too deeply to read its security labels")
        if isinstance(value, list):
            stack += [(v, depth + 1) for v in value]
        elif isinstance(value, dict):
            if value.get("url") == INLINE_LABEL:
                codings.append(value.get("valueCoding"))
            stack += [(v, depth + 1) for v in value.values() if isinstance(v, dict | list)]
    return codings
