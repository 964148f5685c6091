"""A client's background at the hospital EHR: which searches read it, and each found resource reduced to what a
peer may need (wire -> kept item). The summary shows a kept item as it is, so no EHR id, identifier, note,
reason or reference to another EHR resource is ever kept: references become displays, and the subject is
Peerway's client.

What counts, per category (docs/peer-app.md says the same for peer app makers):
- upcoming-appointments: Appointment not cancelled/no-show/fulfilled/entered-in-error, starting from now on;
- recovery-goals: Goal whose lifecycleStatus is proposed, planned, accepted, active or on-hold;
- safety-considerations: Flag with status active, a category coded flag-category#safety, a period not over
  (other flags are clinical alerts for staff, not for visitors);
- community-supports: active RelatedPerson; CareTeam participants outside the hospital (a RelatedPerson, or
  someone acting for an organization other than the stay's serviceProvider); Peerway's own CareTeam is skipped;
- diagnosis: active Condition; clinical-notes: current DocumentReference, its metadata only (no content).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
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
from service.errors import InvalidResource, PeerwayError
from service.fhir.dates import optional_instant
from service.fhir.ids import is_fhir_id
from service.fhir.labels import security_labels
from service.fhir.validation import validated

FLAG_CATEGORY = "http://terminology.hl7.org/CodeSystem/flag-category"
SAFETY = "safety"
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


def searches(categories: Iterable[DataCategory], ehr_patient_id: str) -> list[Search]:
    """The EHR searches that read these categories for one patient (one or two per category)."""
    patient = ("patient", f"Patient/{ehr_patient_id}")  # type/id: every server reads it (some not a bare id)
    count = ("_count", PAGE_SIZE)
    plan: dict[DataCategory, list[tuple[str, tuple[tuple[str, str], ...]]]] = {
        DataCategory.UPCOMING_APPOINTMENTS: [("Appointment", (patient, count))],
        DataCategory.RECOVERY_GOALS: [("Goal", (patient, count))],
        DataCategory.SAFETY_CONSIDERATIONS: [("Flag", (patient, count))],
        DataCategory.COMMUNITY_SUPPORTS: [("RelatedPerson", (patient, count)), ("CareTeam", (patient, count))],
        DataCategory.DIAGNOSIS: [("Condition", (patient, count))],
        DataCategory.CLINICAL_NOTES: [("DocumentReference", (patient, count))],
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
        reduced = _REDUCERS[kind](resource, now, hospital)
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
        validated(model, resource, str(resource["resourceType"]))
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
    plain = _unversioned(reference)
    if plain == f"Patient/{patient}":
        return True
    return plain.startswith(("http://", "https://")) and plain.endswith(f"/Patient/{patient}")


def _unversioned(reference: str) -> str:
    return reference.split("/_history/", 1)[0].strip()


def _when(value: object, *, end: bool = False) -> datetime | None:
    try:
        return optional_instant(value, "date", end=end)
    except InvalidResource:
        return None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def _strings(resource: dict[str, Any], *names: str) -> dict[str, str]:
    """The named elements that are strings (a primitive of another JSON type is left out, never copied)."""
    return {n: v for n in names if (v := _text(resource.get(n))) is not None}


def _string_list(values: object) -> list[str]:
    return [v for v in values if _text(v) is not None] if isinstance(values, list) else []


def _display(reference: object) -> dict[str, Any] | None:
    """A Reference kept as its display only (never the EHR's id)."""
    if isinstance(reference, dict) and (display := _text(reference.get("display"))) is not None:
        return {"display": display}
    return None


def _concepts(values: object) -> list[Any]:
    """CodeableConcepts with codings and text only."""
    if not isinstance(values, list):
        return []
    return [concept for v in values if (concept := _concept(v))]


def _concept(value: object) -> dict[str, Any]:
    """A CodeableConcept as its text and codings, each coding as system, code and display only (no id, no
    extension, no version or userSelected)."""
    if not isinstance(value, dict):
        return {}
    codings = value.get("coding")
    kept: dict[str, Any] = {}
    if isinstance(codings, list) and (
        reduced := [c for c in (_strings(c, "system", "code", "display") for c in codings if isinstance(c, dict)) if c]
    ):
        kept["coding"] = reduced
    if (text := _text(value.get("text"))) is not None:
        kept["text"] = text
    return kept


Reduced = tuple[dict[str, Any], datetime | None] | None
LIVE_APPOINTMENT = frozenset({"proposed", "pending", "booked", "arrived", "checked-in", "waitlist"})
LIVE_GOAL = frozenset({"proposed", "planned", "accepted", "active", "on-hold"})


def _appointment(resource: dict[str, Any], now: datetime, hospital: str | None) -> Reduced:
    start = _when(resource.get("start"))
    if resource.get("status") not in LIVE_APPOINTMENT or start is None or start < now:
        return None
    body: dict[str, Any] = _strings(resource, "status", "description", "start", "end")
    minutes = resource.get("minutesDuration")
    if isinstance(minutes, int) and not isinstance(minutes, bool) and minutes > 0:
        body["minutesDuration"] = minutes
    for element in ("serviceType", "specialty"):
        if concepts := _concepts(resource.get(element)):
            body[element] = concepts
    if kind := _concept(resource.get("appointmentType")):
        body["appointmentType"] = kind
    # Where and with whom, by name: a Location or a clinician the EHR names (never the patient's own entry).
    others = []
    for participant in resource.get("participant") or []:
        if not isinstance(participant, dict):
            continue
        actor = participant.get("actor")
        kind_of = str(actor.get("reference", "")).split("/")[0] if isinstance(actor, dict) else ""
        shown = _display(actor)
        status = _text(participant.get("status")) or "needs-action"
        if kind_of in {"Location", "Practitioner", "PractitionerRole", "HealthcareService"} and shown:
            others.append({"actor": shown, "status": status})
    if others:
        body["participant"] = others
    return body, start


def _goal(resource: dict[str, Any], now: datetime, hospital: str | None) -> Reduced:
    if resource.get("lifecycleStatus") not in LIVE_GOAL or not isinstance(resource.get("description"), dict):
        return None
    body: dict[str, Any] = _strings(resource, "lifecycleStatus", "startDate")
    body["description"] = _concept(resource["description"]) or {"text": "goal"}
    if achievement := _concept(resource.get("achievementStatus")):
        body["achievementStatus"] = achievement
    targets = resource.get("target")
    due = [_strings(t, "dueDate") for t in targets if isinstance(t, dict)] if isinstance(targets, list) else []
    if due := [t for t in due if t]:
        body["target"] = due
    return body, _when(resource.get("startDate")) or _when(resource.get("statusDate"))


def _is_safety(resource: dict[str, Any]) -> bool:
    return any(
        coding.get("system") == FLAG_CATEGORY and coding.get("code") == SAFETY
        for concept in _concepts(resource.get("category"))
        for coding in concept.get("coding", [])
    )


def _flag(resource: dict[str, Any], now: datetime, hospital: str | None) -> Reduced:
    period = resource.get("period") if isinstance(resource.get("period"), dict) else {}
    assert isinstance(period, dict)
    ends = _when(period.get("end"), end=True)
    if resource.get("status") != "active" or not _is_safety(resource) or (ends is not None and ends < now):
        return None
    code = _concept(resource.get("code"))
    if not code:
        return None
    body: dict[str, Any] = {"status": "active", "category": _concepts(resource.get("category")), "code": code}
    if kept_period := _strings(period, "start", "end"):
        body["period"] = kept_period
    return body, _when(period.get("start"))


def _minimal_telecom(values: object) -> list[dict[str, Any]]:
    """Phone and email only, with their `use` (no period, no rank history)."""
    if not isinstance(values, list):
        return []
    return [
        _strings(t, "system", "value", "use")
        for t in values
        if isinstance(t, dict) and t.get("system") in {"phone", "email"} and _text(t.get("value"))
    ]


def _name(value: dict[str, Any]) -> dict[str, Any]:
    name: dict[str, Any] = _strings(value, "use", "text", "family")
    if given := _string_list(value.get("given")):
        name["given"] = given
    return name


def _related_person(resource: dict[str, Any], now: datetime, hospital: str | None) -> Reduced:
    if resource.get("active") is False:
        return None
    names = resource.get("name")
    kept_names = [n for n in (_name(v) for v in names if isinstance(v, dict)) if n] if isinstance(names, list) else []
    body: dict[str, Any] = {"active": True}
    if relationship := _concepts(resource.get("relationship")):
        body["relationship"] = relationship
    if kept_names:
        body["name"] = kept_names[:1]
    if telecom := _minimal_telecom(resource.get("telecom")):
        body["telecom"] = telecom
    return body, None


def _outside(participant: dict[str, Any], hospital: str | None) -> bool:
    """A RelatedPerson member, or someone acting for an organization that is known not to be the hospital. With
    no hospital known (a stay from HL7 v2 names no serviceProvider) only RelatedPersons count: fail closed."""
    member = participant.get("member")
    kind = str(member.get("reference", "")).split("/")[0] if isinstance(member, dict) else ""
    if kind == "RelatedPerson":
        return True
    if hospital is None:
        return False
    acting_for = participant.get("onBehalfOf")
    reference = acting_for.get("reference") if isinstance(acting_for, dict) else None
    return isinstance(reference, str) and _tail(reference) != _tail(hospital)


def _tail(reference: str) -> str:
    """The id a reference ends with ("Organization/x", "Organization/x/_history/2" and "urn:uuid:x" name the same
    x)."""
    return _unversioned(reference).replace(":", "/").rstrip("/").rsplit("/", 1)[-1]


def _care_team(resource: dict[str, Any], now: datetime, hospital: str | None) -> Reduced:
    meta = resource.get("meta")
    identifiers = resource.get("identifier")
    ours = (
        isinstance(identifiers, list)
        and any(
            isinstance(i, dict) and str(i.get("system", "")).startswith(fhir_profiles.CANONICAL) for i in identifiers
        )
    ) or (isinstance(meta, dict) and meta.get("source") == fhir_profiles.CANONICAL)
    if ours or resource.get("status") not in (None, "active"):
        return None
    participants = []
    for participant in resource.get("participant") or []:
        if not isinstance(participant, dict) or not _outside(participant, hospital):
            continue
        member = _display(participant.get("member"))
        if member is None:
            continue
        organization = _display(participant.get("onBehalfOf"))
        if organization is not None:
            member = {"display": f"{member['display']} ({organization['display']})"}
        kept: dict[str, Any] = {"member": member}
        if role := _concepts(participant.get("role")):
            kept["role"] = role
        participants.append(kept)
    if not participants:
        return None
    # No name: a care team's name is free text the hospital wrote for its staff.
    return {"status": "active", "participant": participants}, None


def _condition(resource: dict[str, Any], now: datetime, hospital: str | None) -> Reduced:
    status = _concept(resource.get("clinicalStatus"))
    codes = {c.get("code") for c in status.get("coding", [])}
    code = _concept(resource.get("code"))
    if not codes & {"active", "recurrence", "relapse"} or not code:
        return None
    body: dict[str, Any] = {"clinicalStatus": status, "code": code}
    if category := _concepts(resource.get("category")):
        body["category"] = category
    body |= _strings(resource, "onsetDateTime")
    return body, _when(resource.get("onsetDateTime")) or _when(resource.get("recordedDate"))


def _document(resource: dict[str, Any], now: datetime, hospital: str | None) -> Reduced:
    if resource.get("status") != "current":
        return None
    content = resource.get("content")
    titles = (
        [
            {"attachment": _strings(c["attachment"], "contentType", "title")}
            for c in content
            if isinstance(c, dict) and isinstance(c.get("attachment"), dict)
        ]
        if isinstance(content, list)
        else []
    )
    titles = [t for t in titles if t["attachment"]]
    body: dict[str, Any] = {"status": "current", "content": titles or [{"attachment": {"title": "note"}}]}
    if kind := _concept(resource.get("type")):
        body["type"] = kind
    body |= _strings(resource, "date", "description")
    return body, _when(resource.get("date"))


_REDUCERS = {
    "Appointment": _appointment,
    "Goal": _goal,
    "Flag": _flag,
    "RelatedPerson": _related_person,
    "CareTeam": _care_team,
    "Condition": _condition,
    "DocumentReference": _document,
}


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
        reduced: dict[str, Any] = _strings(address, *ADDRESS_PARTS)
        if street and (lines := _string_list(address.get("line"))):
            reduced["line"] = lines
        if reduced:
            kept.append(reduced)
    return kept


def minimal_telecom(values: object) -> list[dict[str, Any]]:
    return _minimal_telecom(values)


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
