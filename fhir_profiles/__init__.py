"""Peerway's FHIR R4 profiles, code systems and value sets (fhir_profiles/data), and a small loader/checker.

Pure standard library: the service and the tests read our artifacts through these functions rather than
opening the JSON themselves.
"""

from fhir_profiles.conformance import Problem, check_conformance
from fhir_profiles.registry import (
    CANONICAL,
    CONTACT_IDENTIFIER_SYSTEM,
    DATA_CATEGORY_SYSTEM,
    DATA_CATEGORY_VALUESET,
    PARTICIPANT_ROLE_SYSTEM,
    PARTICIPANT_ROLE_VALUESET,
    PEER_CONTACT_KIND_SYSTEM,
    PEER_CONTACT_KIND_VALUESET,
    PEER_CONTACT_PROFILE,
    PEER_IDENTIFIER_SYSTEM,
    PropertyValue,
    artifact,
    artifacts,
    canonical_resource,
    check_codes,
    codes,
    concept_property,
    display,
    valueset_codes,
)

__all__ = [
    "CANONICAL",
    "CONTACT_IDENTIFIER_SYSTEM",
    "DATA_CATEGORY_SYSTEM",
    "DATA_CATEGORY_VALUESET",
    "PARTICIPANT_ROLE_SYSTEM",
    "PARTICIPANT_ROLE_VALUESET",
    "PEER_CONTACT_KIND_SYSTEM",
    "PEER_CONTACT_KIND_VALUESET",
    "PEER_CONTACT_PROFILE",
    "PEER_IDENTIFIER_SYSTEM",
    "Problem",
    "PropertyValue",
    "artifact",
    "artifacts",
    "canonical_resource",
    "check_codes",
    "check_conformance",
    "codes",
    "concept_property",
    "display",
    "valueset_codes",
]
