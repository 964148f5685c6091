"""Wire -> domain: Da Vinci notification Bundles and PeerContact Encounters.

fhir.resources (R4B models, wire-compatible with R4 for these resources) checks structure and datatypes;
it does not check required code bindings, so the codes we rely on are checked here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, TypeVar

from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.encounter import Encounter
from fhir.resources.R4B.messageheader import MessageHeader
from fhir.resources.R4B.patient import Patient

import fhir_profiles
from service.domain.stay import (
    DAVINCI_EVENT_CODES,
    ContactReport,
    EncounterSnapshot,
    HospitalEvent,
    HospitalEventKind,
    PatientSnapshot,
)
from service.domain.vocabulary import ContactKind
from service.errors import BadRequest, InvalidResource, TooLong
from service.fhir.ids import ID_RULE, MAX_ID_LENGTH, MAX_IDENTIFIER_LENGTH, is_fhir_id
from service.fhir.shape import Read
from service.fhir.validation import check_resource_types, fhirpath, validated

DAVINCI_EVENT_SYSTEM = "http://hl7.org/fhir/us/davinci-alerts/CodeSystem/notification-event"
ACTED_ON = frozenset(kind.value for kind in HospitalEventKind)
# The stored copy of one resource (a Patient, an Encounter): room for an attachment of 1 MiB, not for more.
MAX_SNAPSHOT_CHARS = 2 * 1024 * 1024
EVENT_LENGTH = 64  # as processed_message.event keeps it
R = TypeVar("R", Encounter, MessageHeader, Patient)
T = TypeVar("T")
R4_ENCOUNTER_STATUSES = frozenset(
    {
        "planned",
        "arrived",
        "triaged",
        "in-progress",
        "onleave",
        "finished",
        "cancelled",
        "entered-in-error",
        "unknown",
    }
)


def load_json(body: bytes, what: str, read: Read | None = None) -> dict[str, Any]:
    """Bytes -> a JSON object, or a 400 that says it is not one. `read`: json.loads(body) as the shape check
    read it already (service/fhir/shape.py), checked here as if read now."""
    try:
        data = read.value if read is not None else json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequest(f"the body is not JSON: {exc}") from None
    except (ValueError, RecursionError):  # past the limits service/fhir/shape.py checks first
        raise BadRequest("the body is not JSON Peerway can read") from None
    if not isinstance(data, dict):
        raise BadRequest(f"the body must be a FHIR {what} JSON object")
    if data.get("resourceType") != what:
        raise BadRequest(f"expected resourceType {what}, got {data.get('resourceType')!r}", "resourceType")
    # JSON can only write U+0000 escaped: a UTF-8 body without the escape holds none (with it, find where).
    utf8 = json.detect_encoding(body) in ("utf-8", "utf-8-sig")
    where = _nul_at(data) if not utf8 or b"\\u0000" in body else None
    if where is not None:
        # No FHIR string holds a control character, and PostgreSQL can neither store nor compare text with NUL.
        expression = fhirpath(what, where)
        raise BadRequest(f"{expression}: text may not contain U+0000", expression)
    return data


def _nul_at(value: Any) -> tuple[int | str, ...] | None:
    """Where U+0000 first occurs in a JSON value's strings (keys included), or None. Without recursion: the
    body's depth is bounded (service/fhir/shape.py), but this check must not depend on that."""
    pending: list[tuple[tuple[int | str, ...], Any]] = [((), value)]
    while pending:
        loc, node = pending.pop()
        if isinstance(node, str):
            if "\x00" in node:
                return loc
            continue
        items: list[tuple[int | str, Any]] = (
            list(node.items()) if isinstance(node, dict) else list(enumerate(node)) if isinstance(node, list) else []
        )
        for key, item in reversed(items):  # reversed: the first element is looked at first
            if isinstance(key, str) and "\x00" in key:
                return (*loc, key)
            pending.append(((*loc, key), item))
    return None


def check_entry_count(data: dict[str, Any], limit: int) -> None:
    """Refuse a Bundle with more entries than the configured limit before any model is built (422)."""
    entries = data.get("entry")
    if isinstance(entries, list) and len(entries) > limit:
        raise InvalidResource(f"the Bundle has {len(entries)} entries; at most {limit} are accepted", "Bundle.entry")


def check_id(value: object, expression: str) -> str:
    """A resource id we key rows on: present and a FHIR id (at most 64 characters), else a 422."""
    if not value:
        raise InvalidResource("the resource needs the EHR's id", expression)
    text = str(value)
    if len(text) > MAX_ID_LENGTH:
        raise InvalidResource(f"an id has at most {MAX_ID_LENGTH} characters", expression)
    if not is_fhir_id(text):
        raise InvalidResource(f"not a FHIR id: {ID_RULE}", expression)
    return text


def entry_index(bundle: Any) -> dict[str, Any]:
    """Resolve references inside a Bundle (R4B or R5 model): by fullUrl and by Type/id."""
    index: dict[str, Any] = {}
    for entry in bundle.entry or []:
        resource = entry.resource
        if resource is None:
            continue
        if entry.fullUrl:
            index[entry.fullUrl] = resource
        if getattr(resource, "id", None):
            index[f"{resource.get_resource_type()}/{resource.id}"] = resource
    return index


def resolve(index: Mapping[str, T], reference: str | None) -> T | None:
    if not reference:
        return None
    if reference in index:
        return index[reference]
    # An absolute URL ending in Type/id also resolves to the entry with that Type/id.
    tail = "/".join(reference.rstrip("/").split("/")[-2:])
    return index.get(tail)


def instant(value: object) -> datetime | None:
    """A FHIR dateTime as the model gives it (datetime, date, or 'YYYY' / 'YYYY-MM' text) -> UTC-aware start."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    parts = [int(p) for p in str(value).split("-")]
    return datetime(parts[0], parts[1] if len(parts) > 1 else 1, 1, tzinfo=UTC)


def codes_text(concept: Any) -> str | None:
    if concept is None:
        return None
    for coding in concept.coding or []:
        if coding.code:
            return str(coding.code)
    return str(concept.text) if concept.text else None


@dataclass(frozen=True)
class OtherEvent:
    """A readable notification of an event Peerway does not act on (another Da Vinci code, another system's
    code, an event URI): acknowledged and recorded, because a conformant sender stops after a 4xx."""

    message_id: str
    event_code: str  # the code or URI as sent, cut to what the record keeps
    davinci: bool


def parse_notification(
    data: dict[str, Any], expected_discharge_extension: str | None = None, body: bytes | None = None
) -> HospitalEvent | OtherEvent:
    """A Da Vinci notification message Bundle -> HospitalEvent (admit, transfer, discharge) or OtherEvent, or a
    4xx naming the element at fault when it cannot be read or an event we act on lacks what it needs.

    Only what intake reads is validated as FHIR: the Bundle itself (its entries without their resources), the
    MessageHeader, the focus Encounter and its Patient. The other entries (Location, Practitioner, Condition...)
    must name their resourceType but are neither modelled nor kept: validating them cost more than everything
    else a notification does, for resources Peerway never reads. `body`, the bytes `data` was read from, makes
    the check of every resource's resourceType cheaper.
    """
    check_resource_types(data, "Bundle", body)
    entries = data.get("entry")
    bundle = validated(Bundle, _without_resources(data), "Bundle", types_checked=True)
    if bundle.type != "message":
        raise InvalidResource(f"Bundle.type must be 'message', got {bundle.type!r}", "Bundle.type")
    if not bundle.id:
        raise InvalidResource("a notification Bundle needs an id (it makes replays safe)", "Bundle.id")
    check_id(bundle.id, "Bundle.id")
    raw: list[dict[str, Any]] = entries if isinstance(entries, list) else []  # each an object: the Bundle said so
    header_json = raw[0].get("resource") if raw else None
    if not isinstance(header_json, dict) or header_json.get("resourceType") != "MessageHeader":
        raise InvalidResource("the first entry of a message Bundle must be a MessageHeader", "Bundle.entry[0]")
    header = _entry_model(MessageHeader, header_json, 0)
    coding = header.eventCoding
    if coding is None or coding.system != DAVINCI_EVENT_SYSTEM or coding.code not in ACTED_ON:
        sent = (coding.code if coding is not None else None) or header.eventUri
        if not sent:
            raise InvalidResource("the MessageHeader names no event", "MessageHeader.eventCoding.code")
        davinci = coding is not None and coding.system == DAVINCI_EVENT_SYSTEM and coding.code in DAVINCI_EVENT_CODES
        return OtherEvent(message_id=str(bundle.id), event_code=str(sent)[:EVENT_LENGTH], davinci=davinci)
    index = _raw_index(raw)
    focus_ref = header.focus[0].reference if header.focus else None
    found = _resolve_raw(index, focus_ref)
    if found is None or found[1].get("resourceType") != "Encounter":
        raise InvalidResource(
            f"MessageHeader.focus must reference an Encounter in the Bundle (got {focus_ref!r})",
            "MessageHeader.focus[0]",
        )
    encounter_at, encounter_json = found
    encounter_text = _kept_text(encounter_json)  # kept, and it says whether any element "end" is there to check
    encounter = _entry_model(Encounter, encounter_json, encounter_at, encounter_text)
    subject_ref = encounter.subject.reference if encounter.subject else None
    found = _resolve_raw(index, subject_ref)
    patient, patient_text = None, ""
    if found and found[1].get("resourceType") == "Patient":
        patient_text = _kept_text(found[1])
        patient = _entry_model(Patient, found[1], found[0], patient_text)
    if patient is None or not patient.id:
        raise InvalidResource(
            f"Encounter.subject must reference a Patient with an id in the Bundle (got {subject_ref!r})",
            "Encounter.subject",
        )
    check_id(patient.id, "Patient.id")
    assert found is not None
    return HospitalEvent(
        message_id=str(bundle.id),
        event_code=str(coding.code),
        kind=HospitalEventKind(coding.code),
        sent_at=instant(bundle.timestamp),
        encounter=encounter_snapshot(encounter, _bounded(encounter_text, "Encounter"), expected_discharge_extension),
        patient=PatientSnapshot(ehr_id=str(patient.id), resource_json=_bounded(patient_text, "Patient")),
    )


def _without_resources(data: dict[str, Any]) -> dict[str, Any]:
    """The Bundle with each entry's resource left out: what validating the Bundle itself needs."""
    entries = data.get("entry")
    if not isinstance(entries, list):
        return data
    shell = [
        {key: value for key, value in entry.items() if key != "resource"} if isinstance(entry, dict) else entry
        for entry in entries
    ]
    return {**data, "entry": shell}


def _entry_model(model: type[R], resource: dict[str, Any], at: int, text: str | None = None) -> R:
    """One entry's resource validated on its own; a failure names it as Bundle.entry[at].resource.<element>.
    `text`, the resource as _kept_text wrote it, spares the Period check when it has no element "end"."""
    return validated(
        model,
        resource,
        f"Bundle.entry[{at}].resource",
        types_checked=True,
        periods=text is None or '"end":' in text,  # ASCII JSON: a key "end" is written so, and nothing else is
    )


def _raw_index(entries: list[dict[str, Any]]) -> dict[str, tuple[int, dict[str, Any]]]:
    """Entries by fullUrl and by Type/id, as written (a later entry with the same key wins, as it always did)."""
    index: dict[str, tuple[int, dict[str, Any]]] = {}
    for at, entry in enumerate(entries):
        resource = entry.get("resource")
        if not isinstance(resource, dict):
            continue
        full_url = entry.get("fullUrl")
        if isinstance(full_url, str) and full_url:
            index[full_url] = (at, resource)
        resource_id = resource.get("id")
        if isinstance(resource_id, str) and resource_id:
            index[f"{resource['resourceType']}/{resource_id}"] = (at, resource)
    return index


def _resolve_raw(
    index: dict[str, tuple[int, dict[str, Any]]], reference: str | None
) -> tuple[int, dict[str, Any]] | None:
    return resolve(index, reference)


def encounter_snapshot(
    encounter: Encounter, resource_json: str, expected_discharge_extension: str | None
) -> EncounterSnapshot:
    """An R4 Encounter (R4B model) -> the snapshot intake keeps; its id and status are checked here."""
    check_id(encounter.id, "Encounter.id")
    if encounter.status not in R4_ENCOUNTER_STATUSES:
        raise InvalidResource(f"Encounter.status {encounter.status!r} is not an R4 code", "Encounter.status")
    hospitalization = encounter.hospitalization
    return EncounterSnapshot(
        ehr_id=str(encounter.id),
        status=str(encounter.status),
        start=instant(encounter.period.start) if encounter.period else None,
        end=instant(encounter.period.end) if encounter.period else None,
        discharge_disposition=codes_text(hospitalization.dischargeDisposition) if hospitalization else None,
        readmission=bool(hospitalization and hospitalization.reAdmission),
        resource_json=resource_json,
        updated_at=instant(encounter.meta.lastUpdated) if encounter.meta else None,
        expected_end=extension_instant(encounter, expected_discharge_extension),
    )


def extension_instant(resource: Any, url: str | None) -> datetime | None:
    """The date a deployment-named extension carries (dateTime, date, instant or a Period's end), if any."""
    if not url:
        return None
    for extension in getattr(resource, "extension", None) or []:
        if extension.url != url:
            continue
        for name in ("valueDateTime", "valueInstant", "valueDate"):
            value = getattr(extension, name, None)
            if value is not None:
                return instant(value)
        period = getattr(extension, "valuePeriod", None)
        if period is not None and period.end is not None:
            return instant(period.end)
    return None


def kept_json(resource: dict[str, Any], what: str) -> str:
    """The entry's resource exactly as the sender wrote it (not re-serialised by the model), at most
    MAX_SNAPSHOT_CHARS long: the copy Peerway keeps of it is bounded, whatever each element's own limit."""
    return _bounded(_kept_text(resource), what)


def _kept_text(resource: dict[str, Any]) -> str:
    """The resource as Peerway keeps it: compact ASCII JSON (json.dumps escapes anything else), keys sorted."""
    return json.dumps(resource, separators=(",", ":"), sort_keys=True)


def _bounded(kept: str, what: str) -> str:
    if len(kept) > MAX_SNAPSHOT_CHARS:
        raise TooLong(f"the {what} is longer than the {MAX_SNAPSHOT_CHARS} characters Peerway keeps of one", what)
    return kept


def original_json(bundle_data: dict[str, Any], resource: Any) -> str:
    """A modelled entry's resource as the sender wrote it (kept_json), found by its type and id."""
    what = resource.get_resource_type()
    for entry in bundle_data.get("entry") or []:
        found = entry.get("resource") if isinstance(entry, dict) else None
        if isinstance(found, dict) and found.get("resourceType") == what and found.get("id") == resource.id:
            return kept_json(found, what)
    # Not matched by type and id as written (the model normalised the id): keep what the model read.
    dumped: dict[str, Any] = json.loads(resource.model_dump_json(by_alias=True, exclude_none=True))
    return kept_json(dumped, what)


# --- PeerContact ---------------------------------------------------------------------------------------------

_FORBIDDEN_CONTACT_ELEMENTS = ("text", "reasonCode", "reasonReference", "diagnosis")


def parse_peer_contact(data: dict[str, Any]) -> ContactReport:
    """A PeerContact Encounter posted by a peer's app -> ContactReport, or a 4xx naming the element.

    The profile (fhir_profiles StructureDefinition peer-contact) admits no free-text clinical notes:
    narrative, reasons and diagnoses are refused rather than silently dropped.
    """
    for element in _FORBIDDEN_CONTACT_ELEMENTS:
        if element in data:
            raise InvalidResource(
                f"a peer contact carries no clinical notes or diagnoses: remove Encounter.{element}",
                f"Encounter.{element}",
            )
    encounter = validated(Encounter, data, "Encounter")
    if encounter.status != "finished":
        raise InvalidResource(
            "a peer contact is recorded when it has happened: Encounter.status must be 'finished'",
            "Encounter.status",
        )
    kinds = [
        coding.code
        for concept in encounter.type or []
        for coding in concept.coding or []
        if coding.system == fhir_profiles.PEER_CONTACT_KIND_SYSTEM
    ]
    try:
        kind = ContactKind(str(kinds[0])) if len(kinds) == 1 else None
    except ValueError:
        kind = None
    if kind is None:
        allowed = ", ".join(k.value for k in ContactKind)
        raise InvalidResource(
            f"Encounter.type needs exactly one code of {fhir_profiles.PEER_CONTACT_KIND_SYSTEM} ({allowed})",
            "Encounter.type",
        )
    subject = encounter.subject.reference if encounter.subject else None
    if not subject or not subject.startswith("Patient/") or subject.count("/") != 1:
        raise InvalidResource("Encounter.subject must be a Patient/<id> reference", "Encounter.subject")
    if not is_fhir_id(subject.split("/", 1)[1]):
        raise InvalidResource(f"Encounter.subject must be a Patient/<id> reference ({ID_RULE})", "Encounter.subject")
    start = encounter.period.start if encounter.period is not None else None
    if not isinstance(start, datetime) or start.tzinfo is None:
        raise InvalidResource("Encounter.period.start needs a date, time and time zone", "Encounter.period.start")
    minutes = _minutes(encounter, start)
    identifier = next((f"{i.system}|{i.value}" for i in encounter.identifier or [] if i.system and i.value), None)
    if identifier is not None and len(identifier) > MAX_IDENTIFIER_LENGTH:
        raise InvalidResource(
            f"Encounter.identifier: system|value has at most {MAX_IDENTIFIER_LENGTH} characters", "Encounter.identifier"
        )
    return ContactReport(
        client_id=subject.split("/", 1)[1],
        kind=kind,
        started_at=start,
        minutes=minutes,
        app_identifier=identifier,
    )


def _minutes(encounter: Encounter, start: datetime) -> int:
    length = encounter.length
    end = encounter.period.end if encounter.period is not None else None
    if length is not None and length.value is not None:
        if (length.code or length.unit) not in ("min", "minutes"):
            raise InvalidResource("Encounter.length must be in minutes (UCUM 'min')", "Encounter.length")
        value = float(length.value)
    elif end is not None:
        if not isinstance(end, datetime) or end.tzinfo is None:
            raise InvalidResource("Encounter.period.end needs a date, time and time zone", "Encounter.period.end")
        value = (end - start).total_seconds() / 60
    else:
        raise InvalidResource("give Encounter.length (minutes) or Encounter.period.end", "Encounter.length")
    if not 1 <= value <= 24 * 60 or value != int(value):
        raise InvalidResource("Encounter.length must be whole minutes between 1 and 1440", "Encounter.length")
    return int(value)


def patient_identifiers(patient_json: str) -> list[tuple[str, str]]:
    """(system, value) of each Patient.identifier that has both, from a stored snapshot (plain JSON: no model)."""
    try:
        patient = json.loads(patient_json)
    except ValueError:
        return []
    identifiers = patient.get("identifier") if isinstance(patient, dict) else None
    found: list[tuple[str, str]] = []
    for identifier in identifiers if isinstance(identifiers, list) else []:
        if not isinstance(identifier, dict):
            continue
        system, value = identifier.get("system"), identifier.get("value")
        if isinstance(system, str) and isinstance(value, str) and system and value.strip():
            found.append((system, value.strip()))
    return found
