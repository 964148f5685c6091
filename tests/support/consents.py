"""R4 Consents as a coordinator would record them for a client's peer supporter, and the same as R5."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import fhir_profiles

CONSENTSCOPE = "http://terminology.hl7.org/CodeSystem/consentscope"
CONSENTACTION = "http://terminology.hl7.org/CodeSystem/consentaction"
ACTREASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
FHIR_TYPES = "http://hl7.org/fhir/fhir-types"  # R5's resource type codes (provision.resourceType)


def peer_consent(
    patient: str,
    categories: list[str],
    *,
    actor: str | None = None,
    status: str = "active",
    start: datetime | None = None,
    end: datetime | None = None,
    date_time: datetime | None = None,
) -> dict[str, Any]:
    """Permit the peer (`Practitioner/<id>`, or with actor=None whichever peer is assigned) to access the
    given data categories of the client, for coordination of care."""
    now = datetime.now(UTC)
    if actor is None:
        actor_rule: dict[str, Any] = {
            "role": {"coding": [{"system": fhir_profiles.PARTICIPANT_ROLE_SYSTEM, "code": "assigned-peer-supporter"}]},
            "reference": {"display": "the client's assigned peer supporter"},
        }
    else:
        actor_rule = {
            "role": {"coding": [{"system": PARTICIPATION, "code": "IRCP"}]},
            "reference": {"reference": actor},
        }
    return {
        "resourceType": "Consent",
        "status": status,
        "scope": {"coding": [{"system": CONSENTSCOPE, "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-6"}]}],
        "patient": {"reference": patient},
        "dateTime": (date_time or now).isoformat(),
        "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}]},
        "provision": {
            "type": "permit",
            "period": {
                "start": (start or now - timedelta(days=1)).isoformat(),
                "end": (end or now + timedelta(days=180)).isoformat(),
            },
            "actor": [actor_rule],
            "action": [{"coding": [{"system": CONSENTACTION, "code": "access"}]}],
            "purpose": [{"system": ACTREASON, "code": "COC"}],
            "code": [{"coding": [{"system": fhir_profiles.DATA_CATEGORY_SYSTEM, "code": c}]} for c in categories],
        },
    }


# R4 Consent elements and what R5 calls them (R5 has no scope: its consentscope code joins `category`).
_R5_NAMES = {
    "resourceType": "resourceType",
    "id": "id",
    "identifier": "identifier",
    "status": "status",
    "patient": "subject",
    "dateTime": "date",
    "organization": "controller",
}


def as_r5(consent: dict[str, Any]) -> dict[str, Any]:
    """An R4 Consent as R5 writes it: `subject`, `date` (a date), `decision`, `period` and untyped provisions,
    each level the opposite of its parent. A root provision holding only its type, period and exceptions
    becomes the decision; a root with rules of its own becomes the one exception to the opposite decision
    (deny by default makes the two the same)."""
    r5: dict[str, Any] = {}
    for name, value in consent.items():
        if name in _R5_NAMES:
            r5[_R5_NAMES[name]] = value
        elif name in ("scope", "category"):
            r5["category"] = ([consent["scope"]] if "scope" in consent else []) + consent.get("category", [])
        elif name == "policyRule":
            r5["regulatoryBasis"] = [value]
        elif name != "provision":
            raise ValueError(f"as_r5 does not convert Consent.{name}")
    if "date" in r5:
        r5["date"] = r5["date"][:10]
    root = consent.get("provision")
    if root is None:
        return r5
    if "period" in root:
        r5["period"] = root["period"]
    exceptions = root.get("provision", [])
    if set(root) - {"type", "period", "provision"}:
        r5["decision"] = "deny" if root["type"] == "permit" else "permit"
        exceptions = [{k: v for k, v in root.items() if k != "period"}]
    else:
        r5["decision"] = root["type"]
    r5["provision"] = [_untyped(p, r5["decision"]) for p in exceptions]
    return r5


def _untyped(provision: dict[str, Any], parent: str) -> dict[str, Any]:
    kind = provision["type"]
    if kind == parent:
        raise ValueError("R5 cannot say a provision of the same type as its parent")
    untyped = {k: v for k, v in provision.items() if k not in ("type", "provision")}
    if provision.get("provision"):
        untyped["provision"] = [_untyped(p, kind) for p in provision["provision"]]
    return untyped
