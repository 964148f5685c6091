"""Our CapabilityStatement: only what this build really serves (a test holds it to the routes)."""

from __future__ import annotations

from typing import Any

import fhir_profiles
from service.fhir.search import CONFORMANCE_TYPES, SEARCH_PARAMETERS

SMART_SECURITY = "http://terminology.hl7.org/CodeSystem/restful-security-service"
PEER_SUMMARY = f"{fhir_profiles.CANONICAL}/OperationDefinition/peer-summary"
EVALUATE_MEASURE = "http://hl7.org/fhir/OperationDefinition/Measure-evaluate-measure"


def search_params(resource_type: str) -> list[dict[str, str]]:
    """The search parameters a type serves: the very list its router checks (service/fhir/search.py)."""
    return [
        {"name": p.name, "type": p.type, "documentation": p.documentation} for p in SEARCH_PARAMETERS[resource_type]
    ]


def capability_statement(base_url: str, version: str) -> dict[str, Any]:
    return {
        "resourceType": "CapabilityStatement",
        "id": "peerway",
        "url": f"{fhir_profiles.CANONICAL}/CapabilityStatement/peerway",
        "version": version,
        "name": "Peerway",
        "title": "Peerway peer-support integration service",
        "status": "active",
        "date": "2026-11-30",
        "publisher": "Peerway",
        "kind": "instance",
        "software": {"name": "Peerway", "version": version},
        "implementation": {"description": "Peerway", "url": f"{base_url}/fhir"},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "rest": [
            {
                "mode": "server",
                "documentation": "Every interaction but metadata needs a bearer token: people bring an access "
                "token of their organization's OpenID Connect provider (registered in Peerway); systems bring a "
                "Peerway token from SMART Backend Services (POST [base]/auth/token, private_key_jwt; see "
                "[base]/.well-known/smart-configuration for the scopes)."
                " Topic-based subscription notifications (rest-hook; R4 backport, R4B and R5 forms; handshake, "
                "heartbeat, event-notification with full-resource, id-only or empty payloads) are received at "
                "POST [base]/subscription-notification, authenticated by the channel header of the Subscription "
                "or by an ehr-system bearer JWT.",
                "security": {
                    # No oauth-uris extension: it requires an authorize URL, which Backend Services have none
                    # of, and SMART 2 replaced it with [base]/.well-known/smart-configuration.
                    "service": [
                        {"coding": [{"system": SMART_SECURITY, "code": "SMART-on-FHIR", "display": "SMART-on-FHIR"}]}
                    ],
                    "description": "Bearer tokens: SMART Backend Services for systems (see "
                    "/.well-known/smart-configuration), OpenID Connect providers' access tokens for people",
                },
                "resource": [
                    {
                        "type": "Consent",
                        "interaction": [
                            {"code": "read"},
                            {"code": "vread"},
                            {"code": "create"},
                            {"code": "update"},
                            {"code": "search-type"},
                        ],
                        "versioning": "versioned-update",
                        "readHistory": False,
                        "updateCreate": True,
                        "conditionalCreate": True,
                        "searchParam": search_params("Consent"),
                    },
                    {
                        "type": "AuditEvent",
                        "interaction": [{"code": "search-type"}],
                        "searchParam": search_params("AuditEvent"),
                        "documentation": "Coordinators: every disclosure (and refusal) of a client's information.",
                    },
                    {
                        "type": "Encounter",
                        "supportedProfile": [fhir_profiles.PEER_CONTACT_PROFILE],
                        "interaction": [
                            {"code": "read"},
                            {"code": "vread"},
                            {"code": "create"},
                            {"code": "update"},
                            {"code": "search-type"},
                        ],
                        "versioning": "versioned-update",
                        "readHistory": False,
                        "updateCreate": False,
                        "conditionalCreate": True,
                        "searchParam": search_params("Encounter"),
                        "documentation": "Peers record contacts (PeerContact profile), read and search their own, "
                        "correct them and cancel them (status entered-in-error).",
                    },
                    {
                        "type": "Patient",
                        "operation": [
                            {
                                "name": "peer-summary",
                                "definition": PEER_SUMMARY,
                                "documentation": "GET or POST [base]/Patient/[id]/$peer-summary: the consented "
                                "summary of one of the calling peer's clients, as a Bundle of type collection (not "
                                "the International Patient Summary's $summary).",
                            }
                        ],
                    },
                    {
                        "type": "QuestionnaireResponse",
                        "interaction": [{"code": "create"}],
                        "documentation": "Coordinators record the client's own answers to "
                        f"{fhir_profiles.CANONICAL}/Questionnaire/client-background; each part is shared with the "
                        "peer only under its own data category.",
                    },
                    *_peer_resources(),
                    *_conformance_resources(),
                ],
                "operation": [
                    {
                        "name": "process-message",
                        "definition": "http://hl7.org/fhir/OperationDefinition/MessageHeader-process-message",
                        "documentation": "Da Vinci Unsolicited Notifications (admit, transfer, discharge); the "
                        "other codes of the notification-event CodeSystem are acknowledged without effect.",
                    }
                ],
            }
        ],
        # No supportedMessage: it must name a MessageDefinition, and the Da Vinci Unsolicited Notifications IG
        # publishes none that is current (1.0.0's notification-admit and -discharge are deprecated).
        "messaging": [
            {
                "documentation": "Receives Da Vinci Unsolicited Notifications (admit, transfer, discharge: "
                "notification-event codes) as message Bundles at [base]/$process-message.",
            }
        ],
    }


def _peer_resources() -> list[dict[str, Any]]:
    """A peer supporter as FHIR: coordinators read the Practitioner and its PractitionerRole."""
    documentation = "Coordinators: a peer supporter of their own site, by the peer's id."
    return [
        {"type": "Practitioner", "interaction": [{"code": "read"}], "documentation": documentation},
        {
            "type": "PractitionerRole",
            "supportedProfile": [fhir_profiles.PEER_SUPPORTER_ROLE_PROFILE],
            "interaction": [{"code": "read"}],
            "documentation": documentation,
        },
    ]


# R4's url search parameters: conformance-url serves the canonical resources it lists; Measure and Questionnaire
# have their own.
URL_PARAMETERS = {"Measure": "Measure-url", "Questionnaire": "Questionnaire-url"}


def _conformance_resources() -> list[dict[str, Any]]:
    """Peerway's own definitions, public (they describe the interface, not anyone); the Measures also evaluated."""
    resources = [
        {
            "type": resource_type,
            "interaction": [{"code": "read"}, {"code": "vread"}, {"code": "search-type"}],
            "versioning": "versioned",
            "searchParam": [
                {
                    "name": "url",
                    "definition": "http://hl7.org/fhir/SearchParameter/"
                    + URL_PARAMETERS.get(resource_type, "conformance-url"),
                    "type": "uri",
                },
                {"name": "_id", "definition": "http://hl7.org/fhir/SearchParameter/Resource-id", "type": "token"},
            ],
            "documentation": f"Peerway's own {resource_type}s (no token needed); meta.versionId is the "
            "artifact's version.",
        }
        for resource_type in CONFORMANCE_TYPES
    ]
    for resource in resources:
        if resource["type"] == "Measure":
            resource["operation"] = [
                {
                    "name": "evaluate-measure",
                    "definition": EVALUATE_MEASURE,
                    "documentation": "GET or POST [base]/Measure/$evaluate-measure?measure=<url> (or "
                    "[base]/Measure/[id]/$evaluate-measure) with periodStart and periodEnd: a summary MeasureReport "
                    "stratified by site, counts only (coordinators: their site; administrators: every site).",
                }
            ]
    return resources
