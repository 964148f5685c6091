"""FHIR read into what the web app shows, and the web app's consent form written as a FHIR Consent.

The only FHIR the people's screens touch: a summary Bundle as lines a peer reads, a Patient's display name for
a coordinator, a Consent in plain words, and the form's answers as an R4 Consent (which the consent use case
then checks and records exactly as one posted to /fhir/Consent)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import fhir_profiles
from consent.categories import DataCategory

_CONSENTSCOPE = "http://terminology.hl7.org/CodeSystem/consentscope"
_CONSENTACTION = "http://terminology.hl7.org/CodeSystem/consentaction"
_ACTREASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
_ACTCODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
_PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"


@dataclass(frozen=True)
class SummaryLine:
    category: DataCategory
    value: str


@dataclass(frozen=True)
class ConsentWords:
    """One Consent as the client page says it: which categories, to whom, for what, from when until when."""

    id: str
    status: str
    permit: bool
    categories: tuple[str, ...]  # data-category codes ("" when the provision names none: every category)
    actors: tuple[str, ...]  # "assigned-peer" or a reference
    purposes: tuple[str, ...]
    start: str | None
    end: str | None


def _name(names: Any) -> str | None:
    for name in names or []:
        if not isinstance(name, dict):
            continue
        if isinstance(name.get("text"), str) and name["text"].strip():
            return str(name["text"]).strip()
        parts = [str(g) for g in name.get("given") or [] if isinstance(g, str)]
        if isinstance(name.get("family"), str):
            parts.append(name["family"])
        if parts:
            return " ".join(parts)
    return None


def display_name(patient: dict[str, Any]) -> str | None:
    """The name a person is called by (the usual one when given), or None."""
    names = [n for n in patient.get("name") or [] if isinstance(n, dict)]
    usual = [n for n in names if n.get("use") == "usual"]
    return _name(usual or names)


def _telecom(patient: dict[str, Any]) -> list[str]:
    return [str(t["value"]) for t in patient.get("telecom") or [] if isinstance(t, dict) and t.get("value")]


def _address(patient: dict[str, Any]) -> list[str]:
    out = []
    for a in patient.get("address") or []:
        if isinstance(a, dict):
            text = a.get("text") or ", ".join(
                str(p) for p in [*(a.get("line") or []), a.get("city"), a.get("postalCode")] if p
            )
            if text:
                out.append(str(text))
    return out


def _day(value: object) -> str | None:
    """The day of a FHIR date or dateTime; a time with a zone is read in UTC, as the desk shows every time."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value[:10]
    return (moment.astimezone(UTC) if moment.tzinfo else moment).date().isoformat()


def summary_lines(bundle: dict[str, Any]) -> list[SummaryLine]:
    """The consented summary (a collection Bundle) line by line: only what the Bundle holds."""
    lines: list[SummaryLine] = []
    for entry in bundle.get("entry") or []:
        resource = entry.get("resource") or {}
        if resource.get("resourceType") == "Patient":
            name = _name(resource.get("name"))
            if name:
                lines.append(SummaryLine(DataCategory.PREFERRED_NAME, name))
            for value in _telecom(resource) + _address(resource):
                lines.append(SummaryLine(DataCategory.CONTACT_DETAILS, value))
        elif resource.get("resourceType") == "Encounter":
            period = resource.get("period") or {}
            start, end = _day(period.get("start")), _day(period.get("end"))
            stay = f"{start or '?'} to {end}" if end else f"from {start or '?'}"
            lines.append(SummaryLine(DataCategory.ADMISSION_DISCHARGE, stay))
            for loc in resource.get("location") or []:
                display = (loc.get("location") or {}).get("display")
                if display:
                    lines.append(SummaryLine(DataCategory.ADMISSION_DISCHARGE, str(display)))
    return lines


def consent_words(consent: dict[str, Any]) -> ConsentWords:
    """A recorded Consent (R4 or R5) in the few terms the client page shows; the top provision only (nested
    exceptions are listed by the explanation, which evaluates them)."""
    provision = consent.get("provision") or {}
    if isinstance(provision, list):  # R5: provision is a list; its first carries the permit's details
        provision = provision[0] if provision else {}
    codes = tuple(
        str(c.get("code"))
        for concept in provision.get("code") or []
        for c in concept.get("coding") or []
        if c.get("system") == fhir_profiles.DATA_CATEGORY_SYSTEM
    )
    actors = []
    for actor in provision.get("actor") or []:
        roles = [c.get("code") for c in ((actor.get("role") or {}).get("coding") or [])]
        if "assigned-peer-supporter" in roles:
            actors.append("assigned-peer")
        else:
            actors.append(str((actor.get("reference") or {}).get("reference") or ""))
    purposes = tuple(str(p.get("code")) for p in provision.get("purpose") or [] if isinstance(p, dict))
    period = provision.get("period") or {}
    decision = consent.get("decision")
    permit = provision.get("type", decision or "permit") == "permit"
    return ConsentWords(
        id=str(consent.get("id", "")),
        status=str(consent.get("status", "")),
        permit=permit,
        categories=codes,
        actors=tuple(actors),
        purposes=purposes,
        start=_day(period.get("start")),
        end=_day(period.get("end")),
    )


def form_consent(
    client_id: str, categories: list[DataCategory], peer_reference: str | None, until: date, signed_at: datetime
) -> dict[str, Any]:
    """The consent form's answers as an R4 Consent: the client permits their assigned peer supporter (or one
    named peer, `Practitioner/<id>`) to access the chosen categories for coordination of care, from today until
    the given day (inclusive)."""
    if peer_reference is None:
        actor: dict[str, Any] = {
            "role": {"coding": [{"system": fhir_profiles.PARTICIPANT_ROLE_SYSTEM, "code": "assigned-peer-supporter"}]},
            "reference": {"display": "my assigned peer supporter"},
        }
    else:
        actor = {
            "role": {"coding": [{"system": _PARTICIPATION, "code": "IRCP"}]},
            "reference": {"reference": peer_reference},
        }
    end = datetime.combine(until, time(23, 59, 59), tzinfo=UTC)
    return {
        "resourceType": "Consent",
        "status": "active",
        "scope": {"coding": [{"system": _CONSENTSCOPE, "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-6", "display": "Consent Document"}]}],
        "patient": {"reference": f"Patient/{client_id}"},
        "dateTime": signed_at.astimezone(UTC).isoformat(),
        "policyRule": {"coding": [{"system": _ACTCODE, "code": "OPTIN"}]},
        "provision": {
            "type": "permit",
            "period": {"start": signed_at.astimezone(UTC).isoformat(), "end": end.isoformat()},
            "actor": [actor],
            "action": [{"coding": [{"system": _CONSENTACTION, "code": "access"}]}],
            "purpose": [{"system": _ACTREASON, "code": "COC"}],
            "code": [{"coding": [{"system": fhir_profiles.DATA_CATEGORY_SYSTEM, "code": c.value}]} for c in categories],
        },
    }


def withdrawn(consent: dict[str, Any]) -> dict[str, Any]:
    """The same Consent, no longer in force (R4 `inactive`; R5 also calls it `inactive`)."""
    out = {k: v for k, v in consent.items() if k != "meta"}
    out["status"] = "inactive"
    return out


def contact_encounter(
    client_id: str,
    kind: str,
    started_at: datetime,
    minutes: int,
    *,
    contact_id: str | None = None,
    status: str = "finished",
    app_identifier: str | None = None,
) -> dict[str, Any]:
    """The contact form's answers as a PeerContact Encounter, as a peer's app would post (or put) it; the
    contact use case parses and checks it like any other."""
    end = started_at + timedelta(minutes=minutes)
    encounter: dict[str, Any] = {
        "resourceType": "Encounter",
        "status": status,
        "class": {"system": _ACTCODE, "code": "FLD"},
        "type": [{"coding": [{"system": fhir_profiles.PEER_CONTACT_KIND_SYSTEM, "code": kind}]}],
        "subject": {"reference": f"Patient/{client_id}"},
        "period": {"start": started_at.isoformat(), "end": end.isoformat()},
        "length": {"value": minutes, "unit": "min", "system": "http://unitsofmeasure.org", "code": "min"},
    }
    if contact_id is not None:
        encounter["id"] = contact_id
    if app_identifier is not None:
        system, _, value = app_identifier.partition("|")
        encounter["identifier"] = [{"system": system, "value": value}]
    return encounter
