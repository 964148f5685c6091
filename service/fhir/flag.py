"""An alert written to the client's EHR as a Flag for the care team (a site setting): active while the alert is
open or acknowledged, inactive with its period's end once resolved. One Flag per alert, under our id and
identifier, so writing it again (a retried job, a second worker) changes nothing."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import fhir_profiles
from service.fhir.build import fhir_instant

FLAG_CATEGORY = "http://terminology.hl7.org/CodeSystem/flag-category"


@dataclass(frozen=True)
class FlagView:
    alert_id: str
    kind: str
    subject_reference: str  # the EHR's Patient
    hospital_stay_reference: str  # the EHR's Encounter of the stay the client was discharged from
    opened_at: datetime
    resolved_at: datetime | None
    organization_name: str


def flag_identifier(alert_id: str) -> str:
    return f"{fhir_profiles.ALERT_IDENTIFIER_SYSTEM}|{alert_id}"


def alert_flag(view: FlagView) -> dict[str, Any]:
    """An R4 Flag: what the program is worried about (a code, never a note), for whom, since when."""
    period = {"start": fhir_instant(view.opened_at)}
    if view.resolved_at is not None:
        period["end"] = fhir_instant(view.resolved_at)
    display = fhir_profiles.display(fhir_profiles.ALERT_KIND_SYSTEM, view.kind)
    return {
        "resourceType": "Flag",
        "id": f"peerway-{view.alert_id}",
        "meta": {"source": fhir_profiles.CANONICAL},
        "identifier": [{"system": fhir_profiles.ALERT_IDENTIFIER_SYSTEM, "value": view.alert_id}],
        "status": "inactive" if view.resolved_at is not None else "active",
        "category": [{"coding": [{"system": FLAG_CATEGORY, "code": "admin", "display": "Administrative"}]}],
        "code": {
            "coding": [{"system": fhir_profiles.ALERT_KIND_SYSTEM, "code": view.kind, "display": display}],
            "text": f"Peer support: {display.lower()}",
        },
        "subject": {"reference": view.subject_reference},
        "period": period,
        "encounter": {"reference": view.hospital_stay_reference},
        "author": {"display": view.organization_name},
    }
