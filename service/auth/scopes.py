"""SMART v2 scopes for systems: which Peerway routes each one opens.

A scope is `system/<Resource>.<permissions>` with permissions from `cruds` (create, read, update, delete,
search), e.g. `system/Consent.cru`. A granted scope covers a required one when the resource matches (or is
`*`) and it holds every permission asked. Routes ask for one permission each; see README "Connecting an EHR".
"""

from __future__ import annotations

import re

from service.errors import Forbidden

__all__ = ["SCOPES", "covers", "parse_scopes", "require"]

_SCOPE = re.compile(r"system/(\*|[A-Z][A-Za-z]+)\.([cruds]+)")

# What Peerway's routes ask of a system, by scope (the token endpoint grants only scopes of these resources).
SCOPES: dict[str, str] = {
    "system/Encounter.u": "send admit, transfer and discharge events ($process-message, subscription notifications)",
    "system/Consent.c": "record a client's Consent (POST /fhir/Consent)",
    "system/Consent.u": "replace or withdraw a Consent (PUT /fhir/Consent/{id})",
    "system/Consent.r": "read a Consent, and ask the CDS Hooks consent consult",
    "system/Consent.s": "search a client's Consents",
    "system/PractitionerRole.c": "register the organization's peer supporters",
    "system/PractitionerRole.r": "read the organization's peers, profiles and caseloads",
    "system/PractitionerRole.u": "change the organization's peers' profiles, status and sites",
}


def parse_scopes(text: str) -> frozenset[str]:
    """The well-formed SMART v2 system scopes in a space-separated string (others are dropped)."""
    return frozenset(s for s in text.split() if _SCOPE.fullmatch(s))


def covers(granted: frozenset[str], needed: str) -> bool:
    match = _SCOPE.fullmatch(needed)
    if match is None:
        return False
    resource, permissions = match.groups()
    for scope in granted:
        found = _SCOPE.fullmatch(scope)
        if found is None:
            continue
        has_resource, has_permissions = found.groups()
        if has_resource in (resource, "*") and set(permissions) <= set(has_permissions):
            return True
    return False


def require(granted: frozenset[str] | None, needed: str) -> None:
    """Raise 403 naming the scope when a system's token does not carry it (people are not scope-limited)."""
    if granted is not None and not covers(granted, needed):
        raise Forbidden(f"this needs the scope {needed}")
