"""HL7 v2 ADT (2.3 to 2.8) -> the domain's AdtMessage, with the Patient and Encounter snapshots built as FHIR R4
following the HL7 Version 2 to FHIR IG's segment maps (PID[Patient], PV1[Encounter], PV2[Encounter]).

Fields used (everything else, Z-segments included, is ignored):
  MSH-3/4 sender, MSH-7 time, MSH-9 type and trigger, MSH-10 control id, MSH-12 version; EVN-2 recorded time.
  PID-3 identifiers (the first MR repetition, else the first, is the Patient id), PID-5 name, PID-7 birth date,
  PID-8 gender, PID-11 address (first), PID-13/14 phone (first), PID-29/30 death.
  PV1-2 class, PV1-3 location (display), PV1-13 readmission, PV1-14 admit source, PV1-19 visit number
  (the Encounter id), PV1-36 discharge disposition, PV1-44 admit and PV1-45 discharge time.
  PV2-9 expected discharge date. MRG-1 prior patient id (A40).
python-hl7 parses and unescapes; this module is strict about what Peerway keys on (ids, times, the trigger).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, tzinfo
from typing import Any

import hl7
from hl7.datatypes import parse_datetime

from service.domain.adt import (
    MERGE_TRIGGERS,
    AckCode,
    AdtMessage,
    AdtRefused,
    Cancellation,
    ErrorLocation,
    Sender,
)
from service.domain.stay import EncounterSnapshot, HospitalEventKind, PatientSnapshot, Stay
from service.fhir.ids import is_fhir_id

SUPPORTED_VERSIONS = ("2.3", "2.4", "2.5", "2.6", "2.7", "2.8")
MAX_SENDER_LENGTH = 199  # MSH-3.1 and MSH-4.1: the sender key MSH-3^MSH-4 fits its 400-character column
# DTM: YYYY[MM[DD[HH[MM[SS[.S[S[S[S]]]]]]]]][+/-ZZZZ] (python-hl7 alone would read "2026-11-01" as January)
HL7_DTM = re.compile(r"^\d{4}(\d{2}(\d{2}(\d{2}(\d{2}(\d{2}(\.\d{1,4})?)?)?)?)?)?([+-]\d{4})?$")
# trigger -> (Encounter.status, the kind of hospital event); PV1-45 decides A08 (see _kind)
TRIGGERS: dict[str, tuple[str, HospitalEventKind | None]] = {
    "A01": ("in-progress", HospitalEventKind.ADMIT),
    "A02": ("in-progress", HospitalEventKind.TRANSFER),
    "A03": ("finished", HospitalEventKind.DISCHARGE),
    "A04": ("arrived", None),  # a registration is not an admission
    "A06": ("in-progress", HospitalEventKind.ADMIT),  # outpatient becomes inpatient
    "A07": ("finished", HospitalEventKind.DISCHARGE),  # inpatient becomes outpatient: the ward stay ends
    "A08": ("in-progress", HospitalEventKind.TRANSFER),
    "A11": ("cancelled", None),
    "A12": ("in-progress", None),
    "A13": ("in-progress", None),
}
CLASS_CODES = {"I": "IMP", "O": "AMB", "E": "EMER", "P": "PRENC", "R": "IMP", "B": "IMP", "N": "IMP"}
GENDERS = {"F": "female", "M": "male", "O": "other", "A": "other", "U": "unknown", "N": "unknown"}
V3_ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
V2_TABLE = "http://terminology.hl7.org/CodeSystem/v2-"


def refuse(segment: str, field: int, code: str, text: str, ack: AckCode = AckCode.ERROR) -> AdtRefused:
    return AdtRefused(ack, text, ErrorLocation(segment, field, code))


def parse_v2(text: str) -> hl7.Message:
    """The message text (\\r, \\n or \\r\\n between segments) parsed, or AR naming MSH."""
    if "\x00" in text:
        raise refuse("MSH", 1, "102", "the message contains NUL characters", AckCode.REJECT)
    normalised = text.replace("\r\n", "\r").replace("\n", "\r").strip("\r")
    if not normalised.startswith("MSH") or len(normalised) < 8:
        raise refuse("MSH", 1, "100", "a message begins with an MSH segment", AckCode.REJECT)
    try:
        return hl7.parse(normalised)
    except Exception:  # python-hl7 raises several kinds on text it cannot split; none is ours to pass on
        raise refuse("MSH", 2, "102", "the MSH encoding characters cannot be read", AckCode.REJECT) from None


def _field(message: hl7.Message, segment: str, field: int, repeat: int = 1, component: int = 1) -> str:
    try:
        value = message.extract_field(segment, 1, field, repeat, component, 1)
    except (KeyError, IndexError):
        return ""
    return str(value).strip()


def _has(message: hl7.Message, segment: str) -> bool:
    try:
        message.segment(segment)
    except KeyError:
        return False
    return True


def _repeats(message: hl7.Message, segment: str, field: int) -> int:
    try:
        value = message.segment(segment)[field]
    except (KeyError, IndexError):
        return 0
    return len(value) if isinstance(value, hl7.Field) else 1


def _time(message: hl7.Message, segment: str, field: int, zone: tzinfo) -> datetime | None:
    raw = _field(message, segment, field)
    if not raw:
        return None
    try:
        if not HL7_DTM.match(raw):
            raise ValueError(raw)
        value = parse_datetime(raw)
        if not isinstance(value, datetime):
            return None
        stamp = value.replace(tzinfo=zone) if value.tzinfo is None else value
        # an offset of 24 hours or more (ValueError) or a time that is no UTC datetime (year 1 east of UTC,
        # year 9999 west of it: OverflowError) is as wrong as a malformed one
        return stamp.astimezone(UTC)
    except (ValueError, TypeError, OverflowError):
        raise refuse(segment, field, "102", f"{segment}-{field} is not an HL7 date/time") from None


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")


def read_header(message: hl7.Message) -> tuple[str, Sender, str, str]:
    """(control id, sender, message type, trigger) or AR: without them a message cannot be taken at all."""
    control_id = _field(message, "MSH", 10)
    if not control_id or len(control_id) > 64:
        raise refuse("MSH", 10, "101", "MSH-10 (message control id) is required, at most 64 characters", AckCode.REJECT)
    version = _field(message, "MSH", 12)
    if not version.startswith(SUPPORTED_VERSIONS):
        raise refuse("MSH", 12, "203", "MSH-12 must be a version from 2.3 to 2.8", AckCode.REJECT)
    sender = Sender(_field(message, "MSH", 3), _field(message, "MSH", 4))
    for number, value in ((3, sender.application), (4, sender.facility)):
        if len(value) > MAX_SENDER_LENGTH:
            text = f"MSH-{number} (its first component) is at most {MAX_SENDER_LENGTH} characters"
            raise refuse("MSH", number, "102", text, AckCode.REJECT)
    kind, trigger = _field(message, "MSH", 9), _field(message, "MSH", 9, component=2)
    if not trigger and kind == "ADT" and _has(message, "EVN"):
        trigger = _field(message, "EVN", 1)  # 2.3 feeds sometimes leave MSH-9.2 to EVN-1
    return control_id, sender, kind, trigger


def processing_id(message: hl7.Message) -> str:
    """MSH-11's first component (HL7 table 0103: P production, T training, D debugging), "" when absent."""
    return _field(message, "MSH", 11)


def adt_message(text: str, zone: tzinfo = UTC, expected_discharge_extension: str | None = None) -> AdtMessage:
    """One ADT message -> AdtMessage, or AdtRefused saying which acknowledgement and where."""
    message = parse_v2(text)
    control_id, sender, kind, trigger = read_header(message)
    if kind != "ADT":
        raise refuse("MSH", 9, "200", "only ADT messages are taken", AckCode.REJECT)
    version = _field(message, "MSH", 12)
    recorded = (_time(message, "EVN", 2, zone) if _has(message, "EVN") else None) or _time(message, "MSH", 7, zone)
    base = AdtMessage(control_id, sender, trigger, version, recorded, stay=None)
    if trigger in MERGE_TRIGGERS:
        prior = _field(message, "MRG", 1) if _has(message, "MRG") else ""
        if not prior:
            raise refuse("MRG", 1, "101", "a merge names the prior patient id in MRG-1")
        if not is_fhir_id(prior):
            raise refuse("MRG", 1, "102", "MRG-1's identifier must be letters, digits, '-' or '.' (at most 64)")
        return _with(base, merged_patient_id=prior, surviving_patient_id=_patient_id(message))
    if trigger not in TRIGGERS:
        return base  # an ADT event Peerway does not act on: acknowledged, recorded without effect
    status, event_kind = TRIGGERS[trigger]
    if not _has(message, "PV1"):
        raise refuse("PV1", 0, "100", f"an {trigger} carries a PV1 segment")
    patient_id = _patient_id(message)
    discharged = _time(message, "PV1", 45, zone)
    if trigger == "A08" and discharged is not None:
        status, event_kind = "finished", HospitalEventKind.DISCHARGE
    if trigger == "A03" and discharged is None:
        discharged = recorded
    stay = Stay(
        encounter=_encounter(message, status, patient_id, zone, discharged, expected_discharge_extension),
        patient=PatientSnapshot(ehr_id=patient_id, resource_json=_dump(_patient(message, patient_id, zone))),
        kind=event_kind,
    )
    cancellation = Cancellation(trigger) if trigger in {c.value for c in Cancellation} else None
    return _with(base, stay=stay, cancellation=cancellation)


def _with(base: AdtMessage, **changes: Any) -> AdtMessage:
    from dataclasses import replace

    return replace(base, **changes)


def _patient_id(message: hl7.Message) -> str:
    if not _has(message, "PID"):
        raise refuse("PID", 0, "100", "the message needs a PID segment")
    count = _repeats(message, "PID", 3)
    chosen = ""
    for repeat in range(1, count + 1):
        value = _field(message, "PID", 3, repeat)
        if value and _field(message, "PID", 3, repeat, 5) == "MR":
            chosen = value
            break
        chosen = chosen or value
    if not chosen:
        raise refuse("PID", 3, "101", "PID-3 (patient identifier list) is required")
    if not is_fhir_id(chosen):
        raise refuse("PID", 3, "102", "PID-3's identifier must be letters, digits, '-' or '.' (at most 64)")
    return chosen


def _patient(message: hl7.Message, patient_id: str, zone: tzinfo) -> dict[str, Any]:
    patient: dict[str, Any] = {"resourceType": "Patient", "id": patient_id}
    identifiers = []
    for repeat in range(1, _repeats(message, "PID", 3) + 1):
        value = _field(message, "PID", 3, repeat)
        if not value:
            continue
        identifier: dict[str, Any] = {"value": value}
        authority_oid = _field(message, "PID", 3, repeat, 4)
        type_code = _field(message, "PID", 3, repeat, 5)
        if authority_oid:
            identifier["assigner"] = {"display": authority_oid}
        if type_code:
            identifier["type"] = {
                "coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": type_code}]
            }
        identifiers.append(identifier)
    patient["identifier"] = identifiers
    names = []
    for repeat in range(1, _repeats(message, "PID", 5) + 1):
        family, given, middle = (_field(message, "PID", 5, repeat, c) for c in (1, 2, 3))
        name: dict[str, Any] = {}
        if family:
            name["family"] = family
        if given or middle:
            name["given"] = [g for g in (given, middle) if g]
        if name:
            names.append(name)
    if names:
        patient["name"] = names
    birth = _time(message, "PID", 7, UTC)
    if birth is not None:
        patient["birthDate"] = birth.date().isoformat()
    gender = GENDERS.get(_field(message, "PID", 8))
    if gender:
        patient["gender"] = gender
    address = {
        key: _field(message, "PID", 11, 1, component)
        for key, component in (("city", 3), ("state", 4), ("postalCode", 5), ("country", 6))
    }
    lines = [x for x in (_field(message, "PID", 11, 1, 1), _field(message, "PID", 11, 1, 2)) if x]
    compact = {k: v for k, v in address.items() if v}
    if lines or compact:
        patient["address"] = [{**({"line": lines} if lines else {}), **compact}]
    telecom = [
        {"system": "phone", "value": number, "use": use}
        for field, use in ((13, "home"), (14, "work"))
        if (number := _phone(message, field))
    ]
    if telecom:
        patient["telecom"] = telecom
    died = _time(message, "PID", 29, zone)
    if died is not None:
        patient["deceasedDateTime"] = _iso(died)
    elif _field(message, "PID", 30) == "Y":
        patient["deceasedBoolean"] = True
    return patient


def _phone(message: hl7.Message, field: int) -> str:
    """XTN: the number as text (XTN.1, deprecated but common), else +country area local (XTN.5-7)."""
    text = _field(message, "PID", field)
    if text:
        return text
    parts = [_field(message, "PID", field, 1, component) for component in (5, 6, 7)]
    if not parts[2]:
        return ""
    return " ".join(([f"+{parts[0]}"] if parts[0] else []) + [p for p in parts[1:] if p])


def _encounter(
    message: hl7.Message,
    status: str,
    patient_id: str,
    zone: tzinfo,
    discharged: datetime | None,
    expected_discharge_extension: str | None,
) -> EncounterSnapshot:
    visit = _field(message, "PV1", 19)
    if not visit:
        raise refuse("PV1", 19, "101", "PV1-19 (visit number) is required: it names the stay")
    if not is_fhir_id(visit):
        raise refuse("PV1", 19, "102", "PV1-19 must be letters, digits, '-' or '.' (at most 64)")
    admitted = _time(message, "PV1", 44, zone)
    expected = _time(message, "PV2", 9, zone) if _has(message, "PV2") else None
    patient_class = _field(message, "PV1", 2)
    encounter: dict[str, Any] = {
        "resourceType": "Encounter",
        "id": visit,
        "identifier": [{"type": {"coding": [{"code": "VN"}]}, "value": visit}],
        "status": status,
        "class": {"system": V3_ACT_CODE, "code": CLASS_CODES.get(patient_class, "IMP")},
        "subject": {"reference": f"Patient/{patient_id}"},
    }
    period = {k: v for k, v in (("start", _iso(admitted)), ("end", _iso(discharged))) if v}
    if period:
        encounter["period"] = period
    hospitalization: dict[str, Any] = {}
    source = _field(message, "PV1", 14)
    if source:
        hospitalization["admitSource"] = {"coding": [{"system": V2_TABLE + "0023", "code": source}]}
    readmission = _field(message, "PV1", 13) == "R"
    if readmission:
        hospitalization["reAdmission"] = {"coding": [{"code": "R"}]}
    disposition = _field(message, "PV1", 36) if discharged is not None else ""
    if disposition:
        hospitalization["dischargeDisposition"] = {"coding": [{"system": V2_TABLE + "0112", "code": disposition}]}
    if hospitalization:
        encounter["hospitalization"] = hospitalization
    location = "^".join(x for x in (_field(message, "PV1", 3, 1, c) for c in (1, 2, 3)) if x)
    if location:
        encounter["location"] = [{"location": {"display": location}}]
    if expected is not None and expected_discharge_extension:
        encounter["extension"] = [{"url": expected_discharge_extension, "valueDateTime": _iso(expected)}]
    return EncounterSnapshot(
        ehr_id=visit,
        status=status,
        start=admitted,
        end=discharged,
        discharge_disposition=disposition or None,
        readmission=readmission,
        resource_json=_dump(encounter),
        expected_end=expected,
    )


def _dump(resource: dict[str, Any]) -> str:
    return json.dumps(resource, separators=(",", ":"), sort_keys=True)
