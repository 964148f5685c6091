"""HL7 v2 ADT -> AdtMessage (service/fhir/v2.py): the fields mapped, the quirks tolerated, the refusals named."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from fhir.resources.R4B.encounter import Encounter
from fhir.resources.R4B.patient import Patient

from service.domain.adt import AckCode, AdtRefused, Cancellation
from service.domain.stay import HospitalEventKind
from service.fhir.v2 import adt_message
from tests.support.hl7v2 import Visit, adt, merge

TORONTO = ZoneInfo("America/Toronto")
PID_3 = "N1001^^^NORTHGEN&2.16.840.1.113883.3.9999&ISO^MR~9876543210^^^ON^JHN"
DISCHARGED = Visit(discharged="20261110120000", disposition="01", expected="20261112")


def test_pid_and_pv1_become_a_valid_patient_and_encounter() -> None:
    message = adt_message(adt("A03", "M1", DISCHARGED), TORONTO, "https://example.org/expected")
    assert (message.control_id, message.trigger, message.version) == ("M1", "A03", "2.5.1")
    assert message.sender.key == "EPIC^NORTHGEN"
    assert message.recorded_at == datetime(2026, 11, 30, 15, 15, tzinfo=UTC)  # EVN-2, Toronto time
    assert message.stay is not None
    Patient.model_validate_json(message.stay.patient.resource_json)  # valid R4 (R4B model)
    Encounter.model_validate_json(message.stay.encounter.resource_json)
    patient = json.loads(message.stay.patient.resource_json)
    encounter = json.loads(message.stay.encounter.resource_json)
    assert patient["id"] == "N1001"
    identifiers = [(i["value"], i["type"]["coding"][0]["code"]) for i in patient["identifier"]]
    assert identifiers == [("N1001", "MR"), ("9876543210", "JHN")]
    assert patient["name"] == [{"family": "O^Brien&Sons", "given": ["Jane", "Q"]}]  # escapes undone
    assert (patient["gender"], patient["birthDate"]) == ("female", "1980-02-14")
    assert patient["address"][0]["line"] == ["12 Queen St~Unit 4"]
    telecom = [(t["use"], t["value"]) for t in patient["telecom"]]
    assert telecom == [("home", "+1 416 5550101"), ("work", "+1 416 5550102")]
    assert (encounter["id"], encounter["status"], encounter["class"]["code"]) == ("V5001", "finished", "IMP")
    assert encounter["subject"] == {"reference": "Patient/N1001"}
    snapshot = message.stay.encounter
    assert snapshot.start == datetime(2026, 11, 1, 13, 30, tzinfo=UTC)
    assert snapshot.end == datetime(2026, 11, 10, 17, 0, tzinfo=UTC)
    assert snapshot.expected_end == datetime(2026, 11, 12, 5, 0, tzinfo=UTC)
    assert snapshot.discharge_disposition == "01"
    assert message.stay.kind is HospitalEventKind.DISCHARGE
    assert json.loads(snapshot.resource_json)["extension"][0]["url"] == "https://example.org/expected"


@pytest.mark.parametrize(
    ("trigger", "visit", "status", "kind", "cancellation"),
    [
        ("A01", Visit(), "in-progress", HospitalEventKind.ADMIT, None),
        ("A02", Visit(), "in-progress", HospitalEventKind.TRANSFER, None),
        ("A03", Visit(), "finished", HospitalEventKind.DISCHARGE, None),
        ("A04", Visit(patient_class="O"), "arrived", None, None),
        ("A06", Visit(), "in-progress", HospitalEventKind.ADMIT, None),
        ("A07", Visit(), "finished", HospitalEventKind.DISCHARGE, None),
        ("A08", Visit(), "in-progress", HospitalEventKind.TRANSFER, None),
        ("A08", DISCHARGED, "finished", HospitalEventKind.DISCHARGE, None),
        ("A11", Visit(), "cancelled", None, Cancellation.ADMIT),
        ("A12", Visit(), "in-progress", None, Cancellation.TRANSFER),
        ("A13", Visit(), "in-progress", None, Cancellation.DISCHARGE),
    ],
)
def test_each_trigger_says_what_happened_to_the_stay(
    trigger: str, visit: Visit, status: str, kind: HospitalEventKind | None, cancellation: Cancellation | None
) -> None:
    message = adt_message(adt(trigger, "T1", visit))
    assert message.stay is not None
    assert (message.stay.encounter.status, message.stay.kind, message.cancellation) == (status, kind, cancellation)


def test_an_event_acknowledged_without_effect_and_a_merge() -> None:
    pending = adt_message(adt("A14", "P1"))
    assert (pending.trigger, pending.stay) == ("A14", None)
    merged = adt_message(merge("G1", surviving="N1001", prior="N0999"))
    assert (merged.merged_patient_id, merged.surviving_patient_id, merged.stay) == ("N0999", "N1001", None)


def test_a_v2_3_message_with_newlines_and_a_trigger_only_in_evn_is_read() -> None:
    text = adt("A01", "O1", version="2.3", separator="\n").replace("ADT^A01^ADT_A01", "ADT")
    message = adt_message(text)
    assert (message.trigger, message.version) == ("A01", "2.3")
    assert message.stay is not None
    assert message.stay.kind is HospitalEventKind.ADMIT


def test_times_with_an_offset_keep_it_and_a_readmission_is_flagged() -> None:
    message = adt_message(adt("A01", "Z1", Visit(admitted="20261101083000-0400", readmission="R")), TORONTO)
    assert message.stay is not None
    assert message.stay.encounter.start == datetime(2026, 11, 1, 12, 30, tzinfo=UTC)
    assert message.stay.encounter.readmission is True


@pytest.mark.parametrize(
    ("text", "ack", "where"),
    [
        (adt("A01", "E1", Visit(visit="")), AckCode.ERROR, ("PV1", 19, "101")),
        (adt("A01", "E2", Visit(visit="V 1/2")), AckCode.ERROR, ("PV1", 19, "102")),
        (adt("A01", "E3").replace(PID_3, ""), AckCode.ERROR, ("PID", 3, "101")),
        (adt("A01", "E4", Visit(admitted="2026-11-01")), AckCode.ERROR, ("PV1", 44, "102")),
        (adt("A01", "E5", Visit(discharged="20261399")), AckCode.ERROR, ("PV1", 45, "102")),
        (adt("A01", ""), AckCode.REJECT, ("MSH", 10, "101")),
        (adt("A01", "E7", version="2.2"), AckCode.REJECT, ("MSH", 12, "203")),
        (adt("A01", "E8").replace("ADT^A01", "ORU^R01"), AckCode.REJECT, ("MSH", 9, "200")),
        ("PID|1||N1", AckCode.REJECT, ("MSH", 1, "100")),
        ("MSH|^~\\&|A\x00B", AckCode.REJECT, ("MSH", 1, "102")),
        (merge("E9", surviving="N1", prior=""), AckCode.ERROR, ("MRG", 1, "101")),
        (merge("E10", surviving="N1", prior="N" * 250), AckCode.ERROR, ("MRG", 1, "102")),
        (merge("E11", surviving="N1", prior="."), AckCode.ERROR, ("MRG", 1, "102")),
        (adt("A01", "E12", sent="00010101000000+0500"), AckCode.ERROR, ("EVN", 2, "102")),
        (adt("A01", "E13", sent="99991231235959-0500"), AckCode.ERROR, ("EVN", 2, "102")),
        (adt("A01", "E14", sent="20261120120000+2400"), AckCode.ERROR, ("EVN", 2, "102")),
        (adt("A01", "E15").replace("|EPIC|", f"|{'E' * 200}|", 1), AckCode.REJECT, ("MSH", 3, "102")),
        (adt("A01", "E16", facility="N" * 200), AckCode.REJECT, ("MSH", 4, "102")),
    ],
)
def test_what_peerway_keys_on_is_checked_and_the_refusal_names_it(
    text: str, ack: AckCode, where: tuple[str, int, str]
) -> None:
    with pytest.raises(AdtRefused) as refused:
        adt_message(text, TORONTO)
    assert refused.value.ack is ack
    assert (refused.value.where.segment, refused.value.where.field, refused.value.where.code) == where


def test_a_time_without_an_offset_that_is_past_9999_in_utc_is_refused() -> None:
    with pytest.raises(AdtRefused) as refused:
        adt_message(adt("A01", "Y1", sent="99991231230000"), TORONTO)
    assert (refused.value.where.segment, refused.value.where.field) == ("EVN", 2)
    assert adt_message(adt("A01", "Y2", sent="99991231230000"), UTC).recorded_at is not None  # fits in UTC


def test_a_sender_of_199_characters_is_taken() -> None:
    message = adt_message(adt("A01", "S1", facility="N" * 199).replace("|EPIC|", f"|{'E' * 199}|", 1))
    assert len(message.sender.key) == 399  # the column holds 400
