"""Examples shown in the OpenAPI document (/docs): data only, read by service/api/openapi.py.

The FHIR ones are Peerway's own example artifacts (fhir_profiles/data) or compact payloads shaped like the
examples/ directory's (tests/api/test_openapi_document.py sends each request example and expects it accepted),
so what /docs shows is what Peerway takes and answers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import fhir_profiles as fp

INSTANT = "2026-11-20T14:00:00Z"
CLIENT = "7c1d2e3f4a5b"  # Peerway's client id, as /api/episodes and the intake answer name it
DAVINCI_EVENTS = "http://hl7.org/fhir/us/davinci-alerts/CodeSystem/notification-event"

_PEER_CONTACT = fp.artifact("Encounter", "peer-contact-example")
_PEER_CONTACT.pop("id", None)
_PEER_CONTACT.pop("text", None)
_PEER_CONTACT.pop("participant", None)  # Peerway names the peer from the token
_PEER_CONTACT.pop("partOf", None)
_PEER_CONTACT.pop("serviceProvider", None)  # Peerway writes the contact under the site's own program
_PEER_CONTACT["subject"] = {"reference": f"Patient/{CLIENT}"}
_PEER_CONTACT["identifier"] = [
    {"system": "urn:ietf:rfc:3986", "value": "urn:uuid:3f2b8c1e-7d4a-4e0b-9a51-6c2d9e8f1a07"}
]


def _message(event: str, encounter_status: str, period: dict[str, str]) -> dict[str, Any]:
    """A Da Vinci Unsolicited Notification message, cut to what Peerway reads (header, stay, patient)."""
    return {
        "resourceType": "Bundle",
        "id": f"{event}-example",
        "type": "message",
        "timestamp": "2026-11-20T09:00:00Z",
        "entry": [
            {
                "fullUrl": "urn:uuid:df0bb058-e0bb-11ea-a11a-864d2e68a322",
                "resource": {
                    "resourceType": "MessageHeader",
                    "id": "df0bb058-e0bb-11ea-a11a-864d2e68a322",
                    "eventCoding": {"system": DAVINCI_EVENTS, "code": event},
                    "source": {"endpoint": "https://ehr.north.example/fhir"},
                    "focus": [{"reference": "urn:uuid:5fe62cd5-bfcf-4d3b-a1e9-80d6f75d6f82"}],
                },
            },
            {
                "fullUrl": "urn:uuid:5fe62cd5-bfcf-4d3b-a1e9-80d6f75d6f82",
                "resource": {
                    "resourceType": "Encounter",
                    "id": "5fe62cd5-bfcf-4d3b-a1e9-80d6f75d6f82",
                    "status": encounter_status,
                    "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
                    "subject": {"reference": "urn:uuid:06e1f0dd-5fbe-4480-9bb4-6b54ec02d31b"},
                    "period": period,
                },
            },
            {
                "fullUrl": "urn:uuid:06e1f0dd-5fbe-4480-9bb4-6b54ec02d31b",
                "resource": {
                    "resourceType": "Patient",
                    "id": "06e1f0dd-5fbe-4480-9bb4-6b54ec02d31b",
                    "identifier": [{"system": "http://hospital.north.example/mrn", "value": "MRN-1001"}],
                    "name": [{"family": "Example", "given": ["Alex"]}],
                    "birthDate": "1990-04-02",
                },
            },
        ],
    }


DISCHARGE = _message(
    "notification-discharge", "finished", {"start": "2026-11-10T21:22:15Z", "end": "2026-11-20T10:22:15Z"}
)

CONSENT: dict[str, Any] = {
    "resourceType": "Consent",
    "status": "active",
    "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
    "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-6"}]}],
    "patient": {"reference": f"Patient/{CLIENT}"},
    "dateTime": "2026-11-20T10:00:00-05:00",
    "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}]},
    "provision": {
        "type": "permit",
        "actor": [
            {
                "role": {"coding": [{"system": fp.PARTICIPANT_ROLE_SYSTEM, "code": "assigned-peer-supporter"}]},
                "reference": {"display": "my assigned peer supporter"},
            }
        ],
        "action": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentaction", "code": "access"}]}],
        "purpose": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "COC"}],
        "code": [
            {"coding": [{"system": fp.DATA_CATEGORY_SYSTEM, "code": code}]}
            for code in ("preferred-name", "contact-details", "admission-discharge")
        ],
    },
}

HEARTBEAT: dict[str, Any] = {
    "resourceType": "Bundle",
    "type": "history",
    "timestamp": "2026-11-20T09:00:00Z",
    "entry": [
        {
            "fullUrl": "urn:uuid:9e41ff6d-5be6-4e6a-8b85-abd4e7f58400",
            "resource": {
                "resourceType": "Parameters",
                "parameter": [
                    {"name": "subscription", "valueReference": {"reference": "https://ehr.north.example/fhir/Subscription/admission"}},
                    {"name": "status", "valueCode": "active"},
                    {"name": "type", "valueCode": "heartbeat"},
                    {"name": "events-since-subscription-start", "valueString": "12"},
                ],
            },
        }
    ],
}  # fmt: skip

# (method, path) -> (resource type, profile canonical URL or None, example body).
FHIR_BODIES: dict[tuple[str, str], tuple[str, str | None, dict[str, Any]]] = {
    ("post", "/fhir/Encounter"): ("Encounter", fp.PEER_CONTACT_PROFILE, _PEER_CONTACT),
    ("put", "/fhir/Encounter/{contact_id}"): ("Encounter", fp.PEER_CONTACT_PROFILE, {**_PEER_CONTACT, "id": "c-1"}),
    ("post", "/fhir/Consent"): ("Consent", None, CONSENT),
    ("put", "/fhir/Consent/{consent_id}"): ("Consent", None, {**CONSENT, "id": "k-1"}),
    ("post", "/fhir/$process-message"): ("Bundle", None, DISCHARGE),
    ("post", "/fhir/subscription-notification"): ("Bundle", None, HEARTBEAT),
    ("post", "/fhir/Patient/{client_id}/$peer-summary"): ("Parameters", None, {"resourceType": "Parameters"}),
}


def _searchset(resource: dict[str, Any] | None) -> dict[str, Any]:
    entries = [] if resource is None else [{"fullUrl": "https://peerway.example/fhir/x", "resource": resource}]
    return {"resourceType": "Bundle", "type": "searchset", "total": len(entries), "entry": entries}


def _outcome(severity: str, code: str, said: str) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome", "issue": [{"severity": severity, "code": code, "diagnostics": said}]}


def _contact_answer() -> dict[str, Any]:
    """The request example as Peerway answers it: its id and identifier, the peer (from the token) as primary
    performer, class from the kind, no partOf (the stay is the EHR's) — as service/fhir/build.py makes it."""
    answer = {k: v for k, v in _PEER_CONTACT.items() if k != "identifier"}
    answer["id"] = "c-1"
    answer["meta"] = {
        "profile": [fp.PEER_CONTACT_PROFILE],
        "source": fp.CANONICAL,
        "versionId": "1",
        "lastUpdated": "2026-11-20T20:10:00Z",
    }
    answer["identifier"] = [{"system": fp.CONTACT_IDENTIFIER_SYSTEM, "value": "c-1"}]
    answer["participant"] = [
        {
            "type": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                                  "code": "PPRF"}]}],
            "individual": {"reference": "Practitioner/p-1", "display": "Robin Peer"},
        }
    ]  # fmt: skip
    return answer


QUESTIONNAIRE_RESPONSE: dict[str, Any] = {
    "resourceType": "QuestionnaireResponse",
    "questionnaire": f"{fp.CANONICAL}/Questionnaire/client-background",
    "status": "completed",
    "subject": {"reference": f"Patient/{CLIENT}"},
    "authored": INSTANT,
    "item": [{"linkId": "interests", "answer": [{"valueString": "gardening, chess"}]}],
}

# The CSV of /api/outcomes.csv, as a spreadsheet receives it (long format; small strata suppressed).
OUTCOMES_CSV = (
    "measure,stratum,item,value\r\n"
    "discharged-into-program,all,initial-population,42\r\n"
    "discharged-into-program,site=north,initial-population,suppressed\r\n"
)


def _measure_report() -> dict[str, Any]:
    return {
        "resourceType": "MeasureReport",
        "status": "complete",
        "type": "summary",
        "measure": f"{fp.CANONICAL}/Measure/discharged-into-program",
        "date": INSTANT,
        "period": {"start": "2026-01-01", "end": "2026-06-30"},
        "group": [{"population": [{"code": {"coding": [{"system": MEASURE_POPULATION, "code": "initial-population"}]},
                                   "count": 42}]}],
    }  # fmt: skip


MEASURE_POPULATION = "http://terminology.hl7.org/CodeSystem/measure-population"


def fhir_answer(path: str, method: str) -> dict[str, Any] | None:
    """The success answer of a FHIR operation, or None for the JSON (non-FHIR) ones."""
    if not path.startswith(("/fhir/", "/cds-services")) or path.startswith("/cds-services"):
        return None
    kind = path.split("/")[2]
    reads: dict[str, Callable[[], dict[str, Any]]] = {
        "Encounter": _contact_answer,
        "Consent": lambda: {**CONSENT, "id": "k-1", "meta": {"versionId": "1"}},
        "Practitioner": lambda: fp.artifact("Practitioner", "peer-example"),
        "PractitionerRole": lambda: fp.artifact("PractitionerRole", "peer-example"),
        "StructureDefinition": lambda: _short(fp.artifact("StructureDefinition", "peer-status")),
        "CodeSystem": lambda: fp.artifact("CodeSystem", "peer-status"),
        "ValueSet": lambda: fp.artifact("ValueSet", "peer-status"),
        "OperationDefinition": lambda: fp.artifact("OperationDefinition", "peer-summary"),
        "SearchParameter": lambda: {"resourceType": "SearchParameter", "url": f"{fp.CANONICAL}/SearchParameter/x"},
        "AuditEvent": lambda: {"resourceType": "AuditEvent", "type": {"code": "rest"}, "recorded": INSTANT},
        "Measure": lambda: _short(fp.artifact("Measure", "time-to-first-contact")),
        "Questionnaire": lambda: fp.artifact("Questionnaire", "client-background"),
    }  # fmt: skip
    if kind == "metadata":
        return {"resourceType": "CapabilityStatement", "status": "active", "kind": "instance", "fhirVersion": "4.0.1"}
    if kind == "$process-message":
        return _outcome(
            "information", "informational", f"episode moved to the community (client {CLIENT}, episode e-1)"
        )
    if kind == "subscription-notification":
        return _outcome("information", "informational", "heartbeat received")
    if path.endswith("/$evaluate-measure"):
        return _measure_report()
    if kind == "QuestionnaireResponse":
        return {**QUESTIONNAIRE_RESPONSE, "id": "qr-1", "meta": {"versionId": "1"}}
    if kind == "Patient":
        return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": {"resourceType": "Patient"}}]}
    build = reads.get(kind)
    if build is None:
        return None
    resource = build()
    searching = method == "get" and path == f"/fhir/{kind}"
    return _searchset(resource) if searching else resource


def _short(resource: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in resource.items() if key not in ("snapshot", "differential", "text")}


# Answers the response model's schema cannot say well.
SMART_CONFIGURATION = {
    "token_endpoint": "https://peerway.example/auth/token",
    "grant_types_supported": ["client_credentials"],
    "token_endpoint_auth_methods_supported": ["private_key_jwt"],
    "code_challenge_methods_supported": ["S256"],
}
JSON_ANSWERS: dict[tuple[str, str], Any] = {
    ("get", "/healthz"): {"status": "ok"},
    ("get", "/readyz"): {"status": "ready"},
    ("get", "/.well-known/jwks.json"): {"keys": [{"kty": "EC", "crv": "P-384", "kid": "k1", "x": "…", "y": "…"}]},
    ("get", "/auth/jwks.json"): {"keys": [{"kty": "RSA", "kid": "k1", "n": "…", "e": "AQAB"}]},
    ("post", "/auth/token"): {"access_token": "eyJ…", "token_type": "bearer", "expires_in": 300,
                              "scope": "system/Encounter.u"},
    ("get", "/.well-known/smart-configuration"): SMART_CONFIGURATION,
    ("get", "/fhir/.well-known/smart-configuration"): SMART_CONFIGURATION,
    ("get", "/cds-services"): {"services": [{"id": "patient-consent-consult", "hook": "patient-consent-consult"}]},
}  # fmt: skip

REQUESTS: dict[tuple[str, str], Any] = {}

NUMBERS = {"caseload_cap": 6, "minutes": 70, "weekly_hours": 10, "min_age": 18, "max_age": 65, "count": 1}

_WORDS = {
    "id": "3f2a9c1e",
    "name": "Robin Peer",
    "site": "north",
    "organization": "alpha",
    "org": "alpha",
    "status": "active",
    "subject": "4f1c9d2e",
    "issuer": "north-idp",
    "url": "https://login.north.example/realms/staff",
    "reason": "moved-away",
    "neighbourhood": "Riverside",
    "kind": "community-visit",
    "note": "asked by the client",
    "language": "en",
    "gender": "female",
    "state": "in-community",
    "patient": f"Patient/{CLIENT}",
    "practitioner": "Practitioner/p-robin",
    "event": "readmitted",
    "discharge_disposition": "home",
    "role": "coordinator",
    "contact_id": "c-1",
    "consent_id": "k-1",
}


def word(name: str) -> str:
    """An example string for a field of that name."""
    if name in _WORDS:
        return _WORDS[name]
    if name.endswith("_id"):
        return {"client_id": CLIENT, "peer_id": "p-robin", "episode_id": "e-1"}.get(name, "3f2a9c1e")
    if name.endswith(("_at", "_time")):
        return "2026-11-20T14:00:00Z"
    return name.replace("_", " ") or "text"
