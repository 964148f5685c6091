"""Bodies for the FHIR write endpoints in the schema-driven test (test_schema_never_5xx.py).

Those endpoints read their bodies themselves, so the OpenAPI schema lists none. Here they get two kinds:
- compact JSON Schemas of what each endpoint reads (the elements Peerway looks at, with the codes and ids that
  reach its deeper checks), added to the schema's copy in the test: schemathesis generates bodies that fit them
  and bodies that break them;
- the real payloads in tests/fixtures (Da Vinci messages, backport notifications, a Consent, a PeerContact),
  damaged by the same mutations as tests/api/test_never_5xx.py, or with one element made hostile (nested 1,200
  deep, an integer of 6,000 digits, 100,000 characters, an id that is a path segment, a backwards period).
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

from hypothesis import strategies as st

import fhir_profiles
from service.domain.vocabulary import ContactKind
from service.fhir.parse import DAVINCI_EVENT_SYSTEM
from tests.api.test_never_5xx import damaged, paths
from tests.conftest import fixture_json
from tests.support.consents import as_r5, peer_consent
from tests.support.flow import peer_contact

FHIR_JSON = "application/fhir+json"
ID = {"type": "string", "pattern": r"^[A-Za-z0-9\-.]{1,64}$"}
INSTANT = {"type": "string", "format": "date-time"}
KNOWN_CLIENT = "known-client"
IDS = ["e1", "p1", "x", ".", ".."]  # a few ids, so references meet their resources (and ids that are not ids)


def _reference(*types: str) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"reference": {"type": "string", "enum": [f"{t}/{i}" for t in types for i in IDS]}},
    }


def _coding(system: str, codes: list[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"system": {"type": "string", "enum": [system]}, "code": {"type": "string", "enum": codes}},
    }


PERIOD = {"type": "object", "properties": {"start": INSTANT, "end": INSTANT}}
ENCOUNTER = {
    "type": "object",
    "required": ["resourceType", "id", "status", "class", "subject"],
    "properties": {
        "resourceType": {"enum": ["Encounter"]},
        "id": {"type": "string", "enum": IDS},
        "status": {"enum": ["in-progress", "finished", "onleave", "cancelled", "done"]},
        "class": _coding("http://terminology.hl7.org/CodeSystem/v3-ActCode", ["IMP", "FLD"]),
        "subject": _reference("Patient"),
        "period": PERIOD,
        "length": {"type": "object", "properties": {"value": {"type": "number"}, "code": {"enum": ["min", "h"]}}},
        "type": {
            "type": "array",
            "items": {"type": "object", "properties": {"coding": {"type": "array", "items": _coding(
                fhir_profiles.PEER_CONTACT_KIND_SYSTEM, [k.value for k in ContactKind] + ["other"])}}},
        },
    },
}  # fmt: skip
PATIENT = {
    "type": "object",
    "required": ["resourceType", "id"],
    "properties": {
        "resourceType": {"enum": ["Patient"]},
        "id": {"type": "string", "enum": IDS},
        "name": {"type": "array", "items": {"type": "object", "properties": {"family": {"type": "string"}}}},
        "birthDate": {"type": "string", "format": "date"},
    },
}
MESSAGE_HEADER = {
    "type": "object",
    "required": ["resourceType", "eventCoding", "source"],
    "properties": {
        "resourceType": {"enum": ["MessageHeader"]},
        "eventCoding": _coding(
            DAVINCI_EVENT_SYSTEM, ["notification-admit", "notification-discharge", "notification-referral", "other"]
        ),
        "source": {"type": "object", "required": ["endpoint"], "properties": {"endpoint": {"type": "string"}}},
        "focus": {"type": "array", "items": _reference("Encounter")},
    },
}
MESSAGE = {
    "type": "object",
    "required": ["resourceType", "id", "type", "entry"],
    "properties": {
        "resourceType": {"enum": ["Bundle"]},
        "id": ID,
        "type": {"enum": ["message", "history"]},
        "timestamp": INSTANT,
        "entry": {
            "type": "array",
            "maxItems": 4,
            "items": {
                "type": "object",
                "properties": {
                    "fullUrl": {"type": "string", "enum": [f"{t}/{i}" for t in ("Encounter", "Patient") for i in IDS]},
                    "resource": {"oneOf": [MESSAGE_HEADER, ENCOUNTER, PATIENT]},
                },
            },
        },
    },
}
_PART = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": {"enum": ["event-number", "timestamp", "focus"]},
        "valueString": {"type": "string", "pattern": "^[0-9]{1,12}$"},
        "valueInstant": INSTANT,
        "valueReference": _reference("Encounter", "Patient"),
    },
}
_PARAMETER = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": {"enum": ["subscription", "status", "type", "events-since-subscription-start", "notification-event"]},
        "valueReference": _reference("Subscription"),
        "valueCode": {"enum": ["active", "requested", "error", "handshake", "heartbeat", "event-notification"]},
        "valueString": {"type": "string", "pattern": "^[0-9]{1,12}$"},
        "part": {"type": "array", "maxItems": 3, "items": _PART},
    },
}
NOTIFICATION = {
    "type": "object",
    "required": ["resourceType", "type", "entry"],
    "properties": {
        "resourceType": {"enum": ["Bundle"]},
        "type": {"enum": ["history", "subscription-notification"]},
        "timestamp": INSTANT,
        "entry": {
            "type": "array",
            "minItems": 1,
            "maxItems": 3,
            "items": {
                "type": "object",
                "properties": {
                    "fullUrl": {"type": "string", "enum": [f"Encounter/{i}" for i in IDS]},
                    "resource": {
                        "oneOf": [
                            {
                                "type": "object",
                                "required": ["resourceType", "parameter"],
                                "properties": {
                                    "resourceType": {"enum": ["Parameters"]},
                                    "parameter": {"type": "array", "maxItems": 6, "items": _PARAMETER},
                                },
                            },
                            ENCOUNTER,
                        ]
                    },
                },
            },
        },
    },
}
CONSENT = {
    "type": "object",
    "required": ["resourceType", "status", "scope", "category", "patient", "provision"],
    "properties": {
        "resourceType": {"enum": ["Consent"]},
        "id": ID,
        "status": {"enum": ["active", "inactive", "draft", "rejected"]},
        "scope": {"type": "object", "properties": {"coding": {"type": "array", "items": _coding(
            "http://terminology.hl7.org/CodeSystem/consentscope", ["patient-privacy", "research"])}}},
        "category": {"type": "array", "items": {"type": "object", "properties": {"coding": {"type": "array",
            "items": _coding("http://loinc.org", ["59284-6"])}}}},
        "patient": _reference("Patient"),
        "dateTime": INSTANT,
        "provision": {
            "type": "object",
            "properties": {
                "type": {"enum": ["permit", "deny"]},
                "period": PERIOD,
                "actor": {"type": "array", "items": {"type": "object", "properties": {
                    "reference": _reference("Practitioner"),
                    "role": {"type": "object", "properties": {"coding": {"type": "array", "items": _coding(
                        "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", ["IRCP"])}}}}}},
                "provision": {"type": "array", "maxItems": 2, "items": {"type": "object", "properties": {
                    "type": {"enum": ["permit", "deny"]}, "period": PERIOD}}},
            },
        },
    },
}  # fmt: skip

# (method, path) -> the schema of its body.
BODY_SCHEMAS: dict[tuple[str, str], dict[str, Any]] = {
    ("post", "/fhir/$process-message"): MESSAGE,
    ("post", "/fhir/subscription-notification"): NOTIFICATION,
    ("post", "/fhir/Consent"): CONSENT,
    ("put", "/fhir/Consent/{consent_id}"): CONSENT,
    ("post", "/fhir/Encounter"): ENCOUNTER,
}


def closed(schema: Any) -> Any:
    """The schema with no properties but those listed: valid bodies are then near-real resources (the invalid
    ones, schemathesis' negative mode, still add anything)."""
    if isinstance(schema, dict):
        out = {key: closed(value) for key, value in schema.items()}
        if "properties" in out:
            out.setdefault("additionalProperties", False)
        return out
    if isinstance(schema, list):
        return [closed(item) for item in schema]
    return schema


def with_fhir_bodies(schema: dict[str, Any]) -> dict[str, Any]:
    """A copy of the OpenAPI document in which each FHIR write operation has its body schema (the document
    itself names the resource type and profile only, and shows an example)."""
    schema = copy.deepcopy(schema)
    for (method, path), body in BODY_SCHEMAS.items():
        operation = schema["paths"].get(path, {}).get(method)
        if operation is not None:
            operation["requestBody"] = {"required": True, "content": {FHIR_JSON: {"schema": closed(body)}}}
    return schema


def _nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = [value]
    return value


# Python cannot even write an integer past 4,300 digits as text (json.dumps raises), so one stands in the
# document as this marker and its digits are put in the serialized body (as_json).
BIG_INTEGER = "big-integer-of-digits:"
_BIG_INTEGER = re.compile(r'"big-integer-of-digits:(\d+)"')


def as_json(document: Any) -> bytes:
    """The document as a JSON body, with each big-integer marker written as that many digits."""
    text = json.dumps(document)
    return _BIG_INTEGER.sub(lambda found: "9" * int(found.group(1)), text).encode()


# What no element may hold: nesting past any parser's recursion, integers past Python's 4,300 digits, text far
# past any element's length, ids that are path segments, a period that ends before it starts.
HOSTILE_VALUES = (
    st.integers(60, 1200).map(_nested)
    | st.integers(4_000, 6_000).map(lambda digits: f"{BIG_INTEGER}{digits}")
    | st.integers(4_000, 100_000).map(lambda length: "x" * length)
    | st.sampled_from([".", "..", "Patient/..", {"start": "2020-01-02", "end": "2020-01-01"}])
)


@st.composite
def hostile(draw: st.DrawFn, document: dict[str, Any]) -> Any:
    """The document with one element replaced by something no element may hold."""
    hurt = copy.deepcopy(document)
    path = draw(st.sampled_from(paths(document)))
    parent: Any = hurt
    for step in path[:-1]:
        parent = parent[step]
    parent[path[-1]] = draw(HOSTILE_VALUES)
    return hurt


def _damaged_fixture(document: dict[str, Any]) -> st.SearchStrategy[Any]:
    return damaged(document, paths(document)) | hostile(document)


def real_bodies(path: str) -> st.SearchStrategy[Any]:
    """Real payloads for the operation at `path`, damaged (or now and then as they are). A client is named
    KNOWN_CLIENT: the test puts a real client's id in its place."""
    if path == "/fhir/$process-message":
        names = ["admit", "transfer", "discharge"]
        documents = [fixture_json(f"davinci/davinci-alerts-{n}-notification-message-bundle-01.json") for n in names]
    elif path == "/fhir/subscription-notification":
        names = ["full_resource_notification", "id_only_notification", "handshake", "heartbeat"]
        documents = [fixture_json(f"backport/backport-r4-{n}_bundle_example.json") for n in names]
    elif path.startswith("/fhir/Consent"):
        consent = peer_consent(f"Patient/{KNOWN_CLIENT}", ["admission-discharge", "contact-details"])
        documents = [consent, as_r5(consent)]
    elif path == "/fhir/Encounter":
        documents = [peer_contact(KNOWN_CLIENT), peer_contact(KNOWN_CLIENT, "phone-video", 15)]
    else:
        return st.nothing()
    return st.sampled_from(documents).flatmap(lambda d: st.just(d) | _damaged_fixture(d))
