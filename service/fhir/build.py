"""Domain -> wire: every FHIR resource Peerway writes is built here, as plain JSON.

Built as dicts rather than through fhir.resources models: the models cost ~0.4 ms a resource to serialise
and these run on request paths. tests/unit/fhir checks each builder's output with the R4B models, and the
test EHR validates what the worker delivers.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import fhir_profiles
from consent import DataCategory
from service.domain.vocabulary import ContactKind
from service.fhir import labels
from service.fhir.background import minimal_address, minimal_telecom
from service.fhir.consent import subject_element

V3_ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
V3_PARTICIPATION_TYPE = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
V3_PURPOSE = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
UCUM = "http://unitsofmeasure.org"
PRONOUNS_EXTENSION = "http://hl7.org/fhir/StructureDefinition/individual-pronouns"
PEERWAY_DEVICE = "Device/peerway"


def fhir_instant(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def operation_outcome(severity: str, code: str, diagnostics: str, expression: str | None = None) -> dict[str, Any]:
    issue: dict[str, Any] = {"severity": severity, "code": code, "diagnostics": diagnostics}
    if expression:
        issue["expression"] = [expression]
    return {"resourceType": "OperationOutcome", "issue": [issue]}


# --- write-back to the EHR ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ContactView:
    """One contact and the references it needs, in whichever id space it is written to.

    The worker fills in the EHR's own ids (Patient, the hospital stay, our Practitioner there); the API
    answers the peer's app with Peerway's ids.
    """

    contact_id: str
    kind: ContactKind
    started_at: datetime
    minutes: int
    subject_reference: str
    hospital_stay_reference: str | None  # the EHR's Encounter of the stay; None in the app's view (not served)
    practitioner_reference: str
    peer_id: str
    peer_name: str
    status: str = "finished"  # or entered-in-error: the peer cancelled it


def ehr_practitioner_id(peer_id: str) -> str:
    return f"peerway-{peer_id}"


def practitioner(peer_id: str, peer_name: str) -> dict[str, Any]:
    """The peer supporter as a Practitioner at the EHR, so contacts can name who the peer is."""
    given, _, family = peer_name.rpartition(" ")
    name: dict[str, Any] = {"text": peer_name}
    if given:
        name |= {"family": family, "given": given.split()}
    return {
        "resourceType": "Practitioner",
        "id": ehr_practitioner_id(peer_id),
        "meta": {"source": fhir_profiles.CANONICAL},
        "identifier": [{"system": fhir_profiles.PEER_IDENTIFIER_SYSTEM, "value": peer_id}],
        "active": True,
        "name": [name],
    }


def encounter_class(kind: ContactKind) -> dict[str, Any]:
    """Where the contact took place, as v3-ActCode: the contact-kind CodeSystem carries it per kind."""
    value = fhir_profiles.concept_property(fhir_profiles.PEER_CONTACT_KIND_SYSTEM, kind.value, "encounter-class")
    if not isinstance(value, dict):
        raise LookupError(f"contact kind {kind.value} has no encounter-class in fhir_profiles")
    return dict(value)


def contact_encounter(view: ContactView) -> dict[str, Any]:
    """A peer contact as an R4 Encounter conforming to our PeerContact profile."""
    kind_system = fhir_profiles.PEER_CONTACT_KIND_SYSTEM
    encounter: dict[str, Any] = {
        "resourceType": "Encounter",
        "id": view.contact_id,
        "meta": {"profile": [fhir_profiles.PEER_CONTACT_PROFILE], "source": fhir_profiles.CANONICAL},
        "identifier": [{"system": fhir_profiles.CONTACT_IDENTIFIER_SYSTEM, "value": view.contact_id}],
        "status": view.status,
        "class": encounter_class(view.kind),
        "type": [
            {
                "coding": [
                    {
                        "system": kind_system,
                        "code": view.kind.value,
                        "display": fhir_profiles.display(kind_system, view.kind.value),
                    }
                ]
            }
        ],
        "subject": {"reference": view.subject_reference},
        "participant": [
            {
                "type": [{"coding": [{"system": V3_PARTICIPATION_TYPE, "code": "PPRF"}]}],
                "individual": {"reference": view.practitioner_reference, "display": view.peer_name},
            }
        ],
        "period": {
            "start": fhir_instant(view.started_at),
            "end": fhir_instant(view.started_at + timedelta(minutes=view.minutes)),
        },
        "length": {"value": view.minutes, "unit": "min", "system": UCUM, "code": "min"},
    }
    # Every contact, in the community too, is part of the hospital stay the peer support follows from (docs/
    # delivery.md): the link an EHR shows from the stay to the peer contacts that came of it.
    if view.hospital_stay_reference is not None:
        encounter["partOf"] = {"reference": view.hospital_stay_reference}
    return encounter


# --- the peer's consented summary ----------------------------------------------------------------------------

PATIENT_CATEGORIES = (DataCategory.PREFERRED_NAME, DataCategory.CONTACT_DETAILS)


def _preferred_names(patient: dict[str, Any]) -> list[Any]:
    names = [n for n in patient.get("name") or [] if isinstance(n, dict)]
    usual = [n for n in names if n.get("use") == "usual"]
    return usual or names[:1]


def summary_patient(
    client_id: str, patient: dict[str, Any], categories: frozenset[DataCategory], *, street: bool = False
) -> dict[str, Any]:
    """A Patient holding only the elements of the permitted categories (never identifiers or birth date).

    Preferred name: the usual name, pronouns and the languages spoken. Contact details: phone and email with
    their `use`; current addresses without geolocation or period, their street lines only when `street`."""
    out: dict[str, Any] = {"resourceType": "Patient", "id": client_id}
    if DataCategory.PREFERRED_NAME in categories:
        out["name"] = _preferred_names(patient)
        pronouns = [e for e in patient.get("extension") or [] if e.get("url") == PRONOUNS_EXTENSION]
        if pronouns:
            out["extension"] = pronouns
        languages = [
            {k: v for k, v in c.items() if k in ("language", "preferred")}
            for c in patient.get("communication") or []
            if isinstance(c, dict) and isinstance(c.get("language"), dict)
        ]
        if languages:
            out["communication"] = languages
    if DataCategory.CONTACT_DETAILS in categories:
        if telecom := minimal_telecom(patient.get("telecom")):
            out["telecom"] = telecom
        if address := minimal_address(patient.get("address"), street=street):
            out["address"] = address
    return out


def summary_encounter(episode_id: str, client_id: str, encounter: dict[str, Any]) -> dict[str, Any]:
    """Admission and discharge: dates, status, unit and discharge disposition; no reasons or diagnoses."""
    out: dict[str, Any] = {
        "resourceType": "Encounter",
        "id": episode_id,
        "status": encounter.get("status", "unknown"),
        "class": encounter.get("class") or {"system": V3_ACT_CODE, "code": "IMP"},
        "subject": {"reference": f"Patient/{client_id}"},
    }
    if encounter.get("period"):
        out["period"] = encounter["period"]
    units = [
        {"location": {"display": loc["location"]["display"]}}
        for loc in encounter.get("location") or []
        if isinstance(loc, dict) and isinstance(loc.get("location"), dict) and loc["location"].get("display")
    ]
    if units:
        out["location"] = units
    disposition = (encounter.get("hospitalization") or {}).get("dischargeDisposition")
    if disposition:
        out["hospitalization"] = {"dischargeDisposition": disposition}
    return out


def collection(resources: Iterable[dict[str, Any]], base_url: str, now: datetime) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "timestamp": fhir_instant(now),
        "entry": [{"fullUrl": _full_url(r, base_url), "resource": r} for r in resources],
    }


def entry_json(resource: dict[str, Any], base_url: str) -> bytes:
    """One collection entry as the response renders it (FhirResponse: no empty elements, compact, UTF-8)."""
    return _compact({"fullUrl": _full_url(resource, base_url), "resource": resource})


def collection_json(entries: Sequence[bytes], now: datetime) -> bytes:
    """The rendered bytes of collection(resources, base_url, now), from its entries rendered by entry_json: the
    entries of a cached summary are rendered once, only the timestamp is new on every read."""
    head = b'{"resourceType":"Bundle","type":"collection","timestamp":' + _compact(fhir_instant(now))
    if not entries:
        return head + b"}"
    return head + b',"entry":[' + b",".join(entries) + b"]}"


def _compact(value: Any) -> bytes:
    return json.dumps(without_empty(value), separators=(",", ":"), ensure_ascii=False).encode()


def _full_url(resource: dict[str, Any], base_url: str) -> str:
    """Where an entry's resource lives: an OperationOutcome (the stale notice) lives nowhere, so a urn:uuid."""
    if resource["resourceType"] == "OperationOutcome":
        return f"urn:uuid:{resource['id']}"
    return f"{base_url}/fhir/{resource['resourceType']}/{resource['id']}"


def searchset(
    resources: Sequence[dict[str, Any]],
    base_url: str,
    links: Sequence[tuple[str, str]],
    total: int | None,
    warnings: Sequence[str] = (),
) -> dict[str, Any]:
    """A searchset page: `links` as (relation, url), `total` only when counted, and an OperationOutcome entry
    (search mode outcome) naming what a lenient search left out."""
    entries: list[dict[str, Any]] = [
        {"fullUrl": f"{base_url}/fhir/{r['resourceType']}/{r['id']}", "resource": r, "search": {"mode": "match"}}
        for r in resources
    ]
    if warnings:
        outcome = {
            "resourceType": "OperationOutcome",
            "issue": [
                {"severity": "warning", "code": "not-supported", "diagnostics": w, "expression": [w.split(" ")[0]]}
                for w in warnings
            ],
        }
        entries.append({"resource": outcome, "search": {"mode": "outcome"}})
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset"}
    if total is not None:
        bundle["total"] = total
    bundle["link"] = [{"relation": relation, "url": url} for relation, url in links]
    if entries:
        bundle["entry"] = entries
    return bundle


def without_empty(value: Any) -> Any:
    """FHIR JSON never holds empty arrays, empty objects or nulls: drop them (and what becomes empty)."""
    if isinstance(value, dict):
        kept = {k: without_empty(v) for k, v in value.items()}
        return {k: v for k, v in kept.items() if v is not None and v != [] and v != {}}
    if isinstance(value, list):
        # Nulls inside an array keep primitive extensions aligned (`given` / `_given`): they stay.
        items = [without_empty(v) for v in value]
        return items if any(v is not None and v != [] and v != {} for v in items) else []
    return value


# --- audit ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Disclosure:
    audit_id: str
    client_id: str
    actor_reference: str
    actor_name: str
    purpose: str
    disclosed: frozenset[DataCategory]
    withheld: frozenset[DataCategory]
    consent_ids: frozenset[str]
    recorded_at: datetime
    items: tuple[DisclosedItem, ...] = ()


@dataclass(frozen=True)
class DisclosedItem:
    """One background item asked for in a disclosure (Peerway's reference, never the EHR's), and whether the
    consent released it."""

    reference: str
    category: DataCategory
    disclosed: bool
    labels: tuple[tuple[str, str], ...] = ()


def disclosure_audit_event(d: Disclosure) -> dict[str, Any]:
    """An R4 AuditEvent for one summary read: who, which client, which categories, under which Consent."""
    entities: list[dict[str, Any]] = [
        {
            "what": {"reference": f"Patient/{d.client_id}"},
            "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "1"},
            "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "1"},
        }
    ]
    entities += [
        {"what": {"reference": f"Consent/{cid}"}, "description": "deciding consent"} for cid in sorted(d.consent_ids)
    ]
    entities += [
        {
            "type": {"system": fhir_profiles.DATA_CATEGORY_SYSTEM, "code": c.value},
            "description": "disclosed" if c in d.disclosed else "withheld",
        }
        for c in sorted(d.disclosed | d.withheld)
    ]
    entities += [
        {
            "what": {"reference": item.reference},
            "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "2"},
            "description": f"item {'disclosed' if item.disclosed else 'withheld'}",
            "detail": [{"type": "data-category", "valueString": item.category.value}],
            **({"securityLabel": [{"system": s, "code": c} for s, c in item.labels]} if item.labels else {}),
        }
        for item in sorted(d.items, key=lambda i: i.reference)
    ]
    return {
        "resourceType": "AuditEvent",
        "id": d.audit_id,
        "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest"},
        "subtype": [{"system": "http://hl7.org/fhir/restful-interaction", "code": "read"}],
        "action": "R",
        "recorded": fhir_instant(d.recorded_at),
        # 0 success: something was disclosed; 4 minor failure: consent withheld everything asked for
        "outcome": "0" if d.disclosed else "4",
        "outcomeDesc": (
            "disclosed: " + ", ".join(sorted(d.disclosed)) if d.disclosed else "nothing disclosed (consent)"
        ),
        "purposeOfEvent": [{"coding": [{"system": V3_PURPOSE, "code": d.purpose}]}],
        "agent": [
            {
                "who": {"reference": d.actor_reference, "display": d.actor_name},
                "requestor": True,
                "type": {"coding": [{"system": V3_PARTICIPATION_TYPE, "code": "IRCP"}]},
            },
            {"who": {"reference": PEERWAY_DEVICE}, "requestor": False},
        ],
        "source": {"observer": {"reference": PEERWAY_DEVICE}},
        "entity": entities,
    }


def versioned(resource: dict[str, Any], version: int, updated: datetime) -> dict[str, Any]:
    """The resource with its meta.versionId and meta.lastUpdated (other meta kept)."""
    meta = {**(resource.get("meta") or {}), "versionId": str(version), "lastUpdated": fhir_instant(updated)}
    return {**resource, "meta": meta}


SUBSETTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED"}


def subsetted(resource: dict[str, Any], elements: Iterable[str]) -> dict[str, Any]:
    """The resource with only `elements` (plus resourceType, id and meta), tagged SUBSETTED as R4 asks, so no
    client mistakes it for the whole resource (or writes it back)."""
    keep = {"resourceType", "id", "meta", *elements}
    out = {k: v for k, v in resource.items() if k in keep}
    meta = dict(out.get("meta") or {})
    meta["tag"] = [*(meta.get("tag") or []), SUBSETTED]
    out["meta"] = meta
    return out


def to_json(resource: dict[str, Any]) -> str:
    return json.dumps(resource, separators=(",", ":"))


def stamped_consent(
    data: dict[str, Any], consent_id: str, version: int, patient_reference: str, now: datetime
) -> dict[str, Any]:
    """The Consent as Peerway keeps it: our id and version, the client (R4 `patient`, R5 `subject`) as
    Peerway's client reference, so the engine reads it as about that client."""
    stored = dict(data)
    stored["id"] = consent_id
    stored["meta"] = {**(data.get("meta") or {}), "versionId": str(version), "lastUpdated": fhir_instant(now)}
    element = subject_element(data)
    subject = dict(data.get(element) or {})
    subject["reference"] = patient_reference
    stored[element] = subject
    return stored


def security_labels(resource: dict[str, Any]) -> list[tuple[str, str]]:
    """(system, code) of the resource's security labels (meta.security and inline), in canonical form."""
    return list(labels.security_labels(resource))
