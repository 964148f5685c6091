"""Found EHR resources reduced to what a peer may need (service/fhir/background.py decides which are found and
kept). Copy by whitelist, never by sub-object: a coding is its system, code and display; a primitive is copied
only when it has its FHIR JSON type; references become displays; free text the hospital wrote for its staff
(notes, reasons, a care team's name) is never copied.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import fhir_profiles
from service.errors import InvalidResource
from service.fhir.dates import optional_instant

FLAG_CATEGORY = "http://terminology.hl7.org/CodeSystem/flag-category"
SAFETY = "safety"


def unversioned(reference: str) -> str:
    return reference.split("/_history/", 1)[0].strip()


def _when(value: object, *, end: bool = False) -> datetime | None:
    try:
        return optional_instant(value, "date", end=end)
    except InvalidResource:
        return None


def _ended(period: dict[str, Any], now: datetime) -> bool:
    """Whether the Period ended before `now` (its end read to the end of its precision: all of a day, a month)."""
    ends = _when(period.get("end"), end=True)
    return ends is not None and ends < now


def text(value: object) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def strings(resource: dict[str, Any], *names: str) -> dict[str, str]:
    """The named elements that are strings (a primitive of another JSON type is left out, never copied)."""
    return {n: v for n in names if (v := text(resource.get(n))) is not None}


def string_list(values: object) -> list[str]:
    return [v for v in values if text(v) is not None] if isinstance(values, list) else []


def _display(reference: object) -> dict[str, Any] | None:
    """A Reference kept as its display only (never the EHR's id)."""
    if isinstance(reference, dict) and (display := text(reference.get("display"))) is not None:
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
        reduced := [c for c in (strings(c, "system", "code", "display") for c in codings if isinstance(c, dict)) if c]
    ):
        kept["coding"] = reduced
    if (said := text(value.get("text"))) is not None:
        kept["text"] = said
    return kept


Reduced = tuple[dict[str, Any], datetime | None] | None
LIVE_APPOINTMENT = frozenset({"proposed", "pending", "booked", "arrived", "checked-in", "waitlist"})
LIVE_GOAL = frozenset({"proposed", "planned", "accepted", "active", "on-hold"})
LIVE_CONDITION = ("active", "recurrence", "relapse")


def _appointment(resource: dict[str, Any], now: datetime, hospital: str | None) -> Reduced:
    start = _when(resource.get("start"))
    if resource.get("status") not in LIVE_APPOINTMENT or start is None or start < now:
        return None
    body: dict[str, Any] = strings(resource, "status", "description", "start", "end")
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
        status = text(participant.get("status")) or "needs-action"
        if kind_of in {"Location", "Practitioner", "PractitionerRole", "HealthcareService"} and shown:
            others.append({"actor": shown, "status": status})
    if others:
        body["participant"] = others
    return body, start


def _goal(resource: dict[str, Any], now: datetime, hospital: str | None) -> Reduced:
    if resource.get("lifecycleStatus") not in LIVE_GOAL or not isinstance(resource.get("description"), dict):
        return None
    body: dict[str, Any] = strings(resource, "lifecycleStatus", "startDate")
    body["description"] = _concept(resource["description"]) or {"text": "goal"}
    if achievement := _concept(resource.get("achievementStatus")):
        body["achievementStatus"] = achievement
    targets = resource.get("target")
    due = [strings(t, "dueDate") for t in targets if isinstance(t, dict)] if isinstance(targets, list) else []
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
    if resource.get("status") != "active" or not _is_safety(resource) or _ended(period, now):
        return None
    code = _concept(resource.get("code"))
    if not code:
        return None
    body: dict[str, Any] = {"status": "active", "category": _concepts(resource.get("category")), "code": code}
    if kept_period := strings(period, "start", "end"):
        body["period"] = kept_period
    return body, _when(period.get("start"))


def telecom(values: object) -> list[dict[str, Any]]:
    """Phone and email only, with their `use` (no period, no rank history)."""
    if not isinstance(values, list):
        return []
    return [
        strings(t, "system", "value", "use")
        for t in values
        if isinstance(t, dict) and t.get("system") in {"phone", "email"} and text(t.get("value"))
    ]


def _name(value: dict[str, Any]) -> dict[str, Any]:
    name: dict[str, Any] = strings(value, "use", "text", "family")
    if given := string_list(value.get("given")):
        name["given"] = given
    return name


def _related_person(resource: dict[str, Any], now: datetime, hospital: str | None) -> Reduced:
    # Only a boolean true, or no `active` at all, is in use: "false", 0 or null from a careless EHR fails closed;
    # and a relationship whose period has ended is over.
    if resource.get("active", True) is not True:
        return None
    period = resource.get("period")
    if isinstance(period, dict) and _ended(period, now):
        return None
    names = resource.get("name")
    kept_names = [n for n in (_name(v) for v in names if isinstance(v, dict)) if n] if isinstance(names, list) else []
    body: dict[str, Any] = {"active": True}
    if relationship := _concepts(resource.get("relationship")):
        body["relationship"] = relationship
    if kept_names:
        body["name"] = kept_names[:1]
    if phones := telecom(resource.get("telecom")):
        body["telecom"] = phones
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
    return unversioned(reference).replace(":", "/").rstrip("/").rsplit("/", 1)[-1]


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
    if not codes & set(LIVE_CONDITION) or not code:
        return None
    body: dict[str, Any] = {"clinicalStatus": status, "code": code}
    if category := _concepts(resource.get("category")):
        body["category"] = category
    body |= strings(resource, "onsetDateTime")
    return body, _when(resource.get("onsetDateTime")) or _when(resource.get("recordedDate"))


def _document(resource: dict[str, Any], now: datetime, hospital: str | None) -> Reduced:
    if resource.get("status") != "current":
        return None
    content = resource.get("content")
    titles = (
        [
            {"attachment": strings(c["attachment"], "contentType", "title")}
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
    body |= strings(resource, "date", "description")
    return body, _when(resource.get("date"))


REDUCERS: dict[str, Callable[[dict[str, Any], datetime, str | None], Reduced]] = {
    "Appointment": _appointment,
    "Goal": _goal,
    "Flag": _flag,
    "RelatedPerson": _related_person,
    "CareTeam": _care_team,
    "Condition": _condition,
    "DocumentReference": _document,
}
