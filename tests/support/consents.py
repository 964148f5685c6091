"""R4 Consents as a coordinator would record them for a client's peer supporter."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import fhir_profiles

CONSENTSCOPE = "http://terminology.hl7.org/CodeSystem/consentscope"
CONSENTACTION = "http://terminology.hl7.org/CodeSystem/consentaction"
ACTREASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"


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
