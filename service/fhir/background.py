"""A client's background at the hospital EHR: which searches read it, and which found resources are kept (wire ->
kept item; the reduction itself is service/fhir/reduction.py). The summary shows a kept item as it is, so no EHR
id, identifier, note, reason or reference to another EHR resource is ever kept: references become displays, and
the subject is Peerway's client.

The EHR's answer is not trusted to be what was asked: a resource is kept only when its type is one the category is
made of, its subject (patient, an Appointment's participant) is this patient, its id is a FHIR id, and its reduced
form is a valid R4 resource; its security labels are read in every spelling (service/fhir/labels.py).

What counts, per category (docs/peer-app.md says the same for peer app makers):
- upcoming-appointments: Appointment not cancelled/no-show/fulfilled/entered-in-error, starting from now on;
- recovery-goals: Goal whose lifecycleStatus is proposed, planned, accepted, active or on-hold;
- safety-considerations: Flag with status active, a category coded flag-category#safety, a period not over
  (other flags are clinical alerts for staff, not for visitors);
- community-supports: active RelatedPerson; CareTeam participants outside the hospital (a RelatedPerson, or
  someone acting for an organization other than the stay's serviceProvider; with no serviceProvider known, only
  RelatedPersons), never the team's name; Peerway's own CareTeam is skipped;
- diagnosis: active Condition; clinical-notes: current DocumentReference, its metadata only (no content).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fhir.resources.R4B.appointment import Appointment
from fhir.resources.R4B.careteam import CareTeam
from fhir.resources.R4B.condition import Condition
from fhir.resources.R4B.documentreference import DocumentReference
from fhir.resources.R4B.flag import Flag
from fhir.resources.R4B.goal import Goal
from fhir.resources.R4B.relatedperson import RelatedPerson
from pydantic import BaseModel

import fhir_profiles
from consent import DataCategory
from service.errors import PeerwayError
from service.fhir.ids import is_fhir_id
from service.fhir.labels import security_labels
from service.fhir.reduction import (
    LIVE_APPOINTMENT,
    LIVE_CONDITION,
    LIVE_GOAL,
    REDUCERS,
    string_list,
    strings,
    telecom,
    unversioned,
)
from service.fhir.validation import validated

PAGE_SIZE = "100"
_ITEM_NAMESPACE = uuid.UUID("5b0c3d59-6f4e-4b8e-9a59-7d0b0b3f6e21")

FETCHED: tuple[DataCategory, ...] = (
    DataCategory.UPCOMING_APPOINTMENTS,
    DataCategory.RECOVERY_GOALS,
    DataCategory.SAFETY_CONSIDERATIONS,
    DataCategory.COMMUNITY_SUPPORTS,
    DataCategory.DIAGNOSIS,
    DataCategory.CLINICAL_NOTES,
)
"""The categories Peerway reads from the EHR after a discharge (the Patient's own come with the notification)."""
SOURCES: dict[DataCategory, str] = {
    DataCategory.UPCOMING_APPOINTMENTS: "Appointment",
    DataCategory.RECOVERY_GOALS: "Goal",
    DataCategory.SAFETY_CONSIDERATIONS: "Flag",
    DataCategory.COMMUNITY_SUPPORTS: "RelatedPerson",
    DataCategory.DIAGNOSIS: "Condition",
    DataCategory.CLINICAL_NOTES: "DocumentReference",
}
"""The resource type a permit by `class` names for each category (as service/app/sharing.py SOURCE_TYPES)."""


@dataclass(frozen=True)
class Search:
    category: DataCategory
    resource_type: str
    params: tuple[tuple[str, str], ...]


def searches(categories: Iterable[DataCategory], ehr_patient_id: str, now: datetime) -> list[Search]:
    """The EHR searches that read these categories for one patient (one or two per category).

    Fetch less: where R4 defines a search parameter for what the reduction keeps anyway (an Appointment's status
    and start, a Goal's lifecycle status, a Condition's clinical status, a DocumentReference's status), the EHR
    filters; and a DocumentReference is asked for without its content (`_elements`, meta kept for its labels).
    The reduction checks the same again, for a server that ignores a filter.
    """
    patient = ("patient", f"Patient/{ehr_patient_id}")  # type/id: every server reads it (some not a bare id)
    count = ("_count", PAGE_SIZE)
    since = now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    appointments = (("status", ",".join(sorted(LIVE_APPOINTMENT))), ("date", f"ge{since}"))
    goals = (("lifecycle-status", ",".join(sorted(LIVE_GOAL))),)
    conditions = (("clinical-status", ",".join(LIVE_CONDITION)),)
    documents = (("status", "current"), ("_elements", "meta,status,type,date,description,subject"))
    plan: dict[DataCategory, list[tuple[str, tuple[tuple[str, str], ...]]]] = {
        DataCategory.UPCOMING_APPOINTMENTS: [("Appointment", (patient, *appointments, count))],
        DataCategory.RECOVERY_GOALS: [("Goal", (patient, *goals, count))],
        DataCategory.SAFETY_CONSIDERATIONS: [("Flag", (patient, count))],  # R4 Flag has no status parameter
        DataCategory.COMMUNITY_SUPPORTS: [("RelatedPerson", (patient, count)), ("CareTeam", (patient, count))],
        DataCategory.DIAGNOSIS: [("Condition", (patient, *conditions, count))],
        DataCategory.CLINICAL_NOTES: [("DocumentReference", (patient, *documents, count))],
    }
    return [Search(c, kind, params) for c in categories for kind, params in plan.get(c, [])]


@dataclass(frozen=True)
class Kept:
    """A found resource as Peerway keeps it: the reduced resource (Peerway's ids), its labels and date."""

    item_id: str
    source: str  # Type/id at the EHR
    resource: dict[str, Any]
    labels: tuple[tuple[str, str], ...]
    data_date: datetime | None


def item_id(client_id: str, source: str) -> str:
    """A stable id for the item (the same source keeps its id across fetches) that does not show the EHR's id."""
    return str(uuid.uuid5(_ITEM_NAMESPACE, f"{client_id}|{source}"))


def kept_items(
    category: DataCategory,
    found: Sequence[dict[str, Any]],
    client_id: str,
    now: datetime,
    *,
    patient: str,
    hospital: str | None = None,
) -> list[Kept]:
    """The found resources of one category that a peer may need, reduced; the others are left out.

    Only what the category is made of counts, whatever the EHR answered to its search (a Condition answering a
    Goal search is no goal), only resources about `patient` (the EHR's Patient id), only valid FHIR ids, each
    source once; and each kept resource must be a valid R4 resource of its type.
    """
    kept: dict[str, Kept] = {}
    for resource in found:
        kind, ehr_id = resource.get("resourceType"), resource.get("id")
        if not isinstance(kind, str) or kind not in CATEGORY_TYPES.get(category, ()):
            continue
        if not isinstance(ehr_id, str) or not is_fhir_id(ehr_id):
            continue
        if not _about(resource, kind, patient):
            continue
        reduced = REDUCERS[kind](resource, now, hospital)
        if reduced is None:
            continue
        body, data_date = reduced
        source = f"{kind}/{ehr_id}"
        labels = security_labels(resource)
        identity = item_id(client_id, source)
        body = {"resourceType": kind, "id": identity, **body}
        if labels:
            body["meta"] = {"security": [{"system": s, "code": c} for s, c in labels]}
        if kind in _SUBJECT:
            body[_SUBJECT[kind]] = {"reference": f"Patient/{client_id}"}
        if kind == "Appointment":
            body["participant"] = [
                {"actor": {"reference": f"Patient/{client_id}"}, "status": "accepted"},
                *body.get("participant", []),
            ]
        if not valid(body):
            continue
        kept.setdefault(identity, Kept(identity, source, body, labels, data_date))
    return list(kept.values())


_SUBJECT = {
    "Goal": "subject",
    "Flag": "subject",
    "CareTeam": "subject",
    "Condition": "subject",
    "DocumentReference": "subject",
    "RelatedPerson": "patient",
}
CATEGORY_TYPES: dict[DataCategory, frozenset[str]] = {
    **{category: frozenset({kind}) for category, kind in SOURCES.items()},
    DataCategory.COMMUNITY_SUPPORTS: frozenset({"RelatedPerson", "CareTeam"}),
}
"""The resource types each category is made of: anything else a search answers is left out."""
_MODELS: dict[str, type[BaseModel]] = {
    "Appointment": Appointment,
    "Goal": Goal,
    "Flag": Flag,
    "RelatedPerson": RelatedPerson,
    "CareTeam": CareTeam,
    "Condition": Condition,
    "DocumentReference": DocumentReference,
}


def valid(resource: dict[str, Any]) -> bool:
    """Whether a kept resource is a valid R4 resource of its type (what the summary will show must be)."""
    model = _MODELS.get(str(resource.get("resourceType")))
    if model is None:
        return False
    try:
        validated(model, resource, str(resource["resourceType"]), from_ehr=True)
    except PeerwayError:
        return False
    return True


def _about(resource: dict[str, Any], kind: str, patient: str) -> bool:
    """Whether the resource is about this patient: its subject (patient; an Appointment's participant) names
    Patient/<patient>, relative or as an absolute URL, of any version."""
    if kind == "Appointment":
        participants = resource.get("participant")
        actors = [p.get("actor") for p in participants if isinstance(p, dict)] if isinstance(participants, list) else []
    else:
        actors = [resource.get(_SUBJECT[kind])]
    return any(isinstance(a, dict) and is_patient_reference(a.get("reference"), patient) for a in actors)


def is_patient_reference(reference: object, patient: str) -> bool:
    """Patient/<patient>, [base]/Patient/<patient>, either with /_history/<version>."""
    if not isinstance(reference, str):
        return False
    plain = unversioned(reference)
    if plain == f"Patient/{patient}":
        return True
    return plain.startswith(("http://", "https://")) and plain.endswith(f"/Patient/{patient}")


# --- the Patient's own categories, minimised ---------------------------------------------------------------

ADDRESS_PARTS = ("use", "type", "city", "district", "state", "postalCode", "country")


def minimal_address(addresses: object, *, street: bool) -> list[dict[str, Any]]:
    """Current addresses reduced to what meeting needs: no geolocation or other extensions, no period, no old
    addresses; street lines only when `street`."""
    if not isinstance(addresses, list):
        return []
    kept = []
    for address in addresses:
        if not isinstance(address, dict) or address.get("use") == "old":
            continue
        if isinstance(address.get("period"), dict) and address["period"].get("end"):
            continue  # an address that ended is history
        reduced: dict[str, Any] = strings(address, *ADDRESS_PARTS)
        if street and (lines := string_list(address.get("line"))):
            reduced["line"] = lines
        if reduced:
            kept.append(reduced)
    return kept


def minimal_telecom(values: object) -> list[dict[str, Any]]:
    return telecom(values)


def stale_outcome(stale: Sequence[tuple[DataCategory, datetime | None]]) -> dict[str, Any]:
    """An OperationOutcome (warning, incomplete) naming each shown category whose last fetch from the EHR failed,
    with the time of the last successful one: the summary shows what Peerway had then."""
    issues = []
    for category, since in stale:
        when = f"last read {since.isoformat()}" if since else "never read"
        issues.append(
            {
                "severity": "warning",
                "code": "incomplete",
                "details": {
                    "coding": [{"system": fhir_profiles.DATA_CATEGORY_SYSTEM, "code": category.value}],
                    "text": f"{category.value}: the hospital EHR could not be read; {when}",
                },
            }
        )
    return {"resourceType": "OperationOutcome", "issue": issues}
