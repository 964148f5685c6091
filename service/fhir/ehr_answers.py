"""What the EHR's answers mean: the Encounters and Patients that id-only and empty notifications point at, the
pages of a search, the CapabilityStatement. (The requests themselves: service/ehr/client.py.)"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from fhir.resources.encounter import Encounter as R5Encounter
from fhir.resources.R4B.encounter import Encounter
from fhir.resources.R4B.patient import Patient

from service.domain.stay import PatientSnapshot, Stay
from service.fhir.parse import encounter_snapshot, instant
from service.fhir.subscription import kind_of, patient_reference, r5_snapshot, reference_tail
from service.fhir.validation import validated

# --- Encounters and Patients fetched from the EHR ------------------------------------------------------------


def is_r5_encounter(data: dict[str, Any]) -> bool:
    """An EHR answering in R5 says so in the shape of the Encounter (class is a list, actualPeriod, R5 codes)."""
    return (
        isinstance(data.get("class"), list)
        or "actualPeriod" in data
        or "admission" in data
        or data.get("status") in ("discharged", "completed", "on-hold", "discontinued")
    )


def fetched_stay(encounter_data: dict[str, Any], patient_data: dict[str, Any] | None, extension: str | None) -> Stay:
    """An Encounter (R4 or R5) and its Patient as read from the EHR -> Stay, or a 4xx naming the element."""
    text = json.dumps(encounter_data, separators=(",", ":"), sort_keys=True)
    if is_r5_encounter(encounter_data):
        snapshot = r5_snapshot(
            encounter_data, validated(R5Encounter, encounter_data, "Encounter", from_ehr=True), extension
        )
        subject = (encounter_data.get("subject") or {}).get("reference")
    else:
        encounter = validated(Encounter, encounter_data, "Encounter", from_ehr=True)
        snapshot = encounter_snapshot(encounter, text, extension)
        subject = encounter.subject.reference if encounter.subject else None
    patient = patient_reference(subject)
    if patient_data is not None:
        model = validated(Patient, patient_data, "Patient", from_ehr=True)
        if model.id == patient.ehr_id:
            patient = PatientSnapshot(
                ehr_id=patient.ehr_id, resource_json=json.dumps(patient_data, separators=(",", ":"), sort_keys=True)
            )
    return Stay(encounter=snapshot, patient=patient, kind=kind_of(snapshot.status))


def patient_id_of(encounter_data: dict[str, Any]) -> str | None:
    """The Patient id an Encounter's subject names (for fetching it next), if it names one."""
    subject = encounter_data.get("subject")
    tail = reference_tail(subject.get("reference") if isinstance(subject, dict) else None)
    return tail[1] if tail is not None and tail[0] == "Patient" else None


def patient_json(data: dict[str, Any]) -> str:
    """A Patient read from the EHR, checked, as the snapshot text kept for the client."""
    validated(Patient, data, "Patient", from_ehr=True)
    return json.dumps(data, separators=(",", ":"), sort_keys=True)


def last_updated(resource: dict[str, Any]) -> datetime | None:
    meta = resource.get("meta")
    value = meta.get("lastUpdated") if isinstance(meta, dict) else None
    if not isinstance(value, str):
        return None
    try:
        return instant(datetime.fromisoformat(value.replace("Z", "+00:00")))
    except ValueError:
        return None


def age(resource: dict[str, Any]) -> tuple[str, str]:
    """Oldest first: by lastUpdated (FHIR instants in one zone sort as text), then by id for a stable choice."""
    return (str((resource.get("meta") or {}).get("lastUpdated") or ""), str(resource["id"]))


# --- searchset pages ----------------------------------------------------------------------------------------


def is_searchset(answer: dict[str, Any]) -> bool:
    """Whether a search's answer is a searchset Bundle (an OperationOutcome or other JSON is no answer at all, so
    never "nothing found")."""
    return answer.get("resourceType") == "Bundle" and answer.get("type") == "searchset"


def search_matches(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    """The resources a searchset page found (search mode "match"; included resources are left out)."""
    found: list[dict[str, Any]] = []
    for entry in bundle.get("entry") or []:
        if not isinstance(entry, dict):
            continue
        resource = entry.get("resource")
        if isinstance(resource, dict) and (entry.get("search") or {}).get("mode", "match") == "match":
            found.append(resource)
    return found


def changed_encounters(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    """The Encounters of a searchset page (anything else, e.g. an OperationOutcome, is left out)."""
    return [
        entry["resource"]
        for entry in bundle.get("entry") or []
        if isinstance(entry, dict)
        and isinstance(entry.get("resource"), dict)
        and entry["resource"].get("resourceType") == "Encounter"
    ]


def next_link(bundle: dict[str, Any]) -> str | None:
    """The URL of the page after this one, as the EHR wrote it (the client decides whether to follow it)."""
    for link in bundle.get("link") or []:
        if isinstance(link, dict) and link.get("relation") == "next" and isinstance(link.get("url"), str):
            return str(link["url"])
    return None


# --- the CapabilityStatement ----------------------------------------------------------------------------------


def offers_events_operation(capability: dict[str, Any]) -> bool:
    """Whether the EHR's CapabilityStatement names the $events operation (on Subscription or server-wide)."""
    for rest in capability.get("rest") or []:
        if not isinstance(rest, dict):
            continue
        operations = list(rest.get("operation") or [])
        for resource in rest.get("resource") or []:
            if isinstance(resource, dict) and resource.get("type") == "Subscription":
                operations += resource.get("operation") or []
        for operation in operations:
            if isinstance(operation, dict) and (
                operation.get("name") == "events" or str(operation.get("definition", "")).endswith("-events")
            ):
                return True
    return False
