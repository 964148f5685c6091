"""What a peer's app is told Peerway did not keep of the contact it sent: one warning per element, naming it,
and none for a contact sent as Peerway keeps it. Never a value the app sent in the words (they also go into an
HTTP header)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

import fhir_profiles
from service.domain.vocabulary import ContactKind
from service.fhir import build
from service.fhir.contact_changes import contact_changes, outcome, warning_header
from tests.support.flow import peer_contact

PEER = "Practitioner/p-1"
SECRET = "s3cr3t-value"  # stands for anything an app may send: it never appears in what Peerway says


def stored(kind: ContactKind = ContactKind.COMMUNITY_VISIT) -> dict[str, Any]:
    return build.contact_encounter(
        build.ContactView(
            contact_id="c-1",
            kind=kind,
            started_at=datetime(2026, 11, 20, 15, 0, tzinfo=UTC),
            minutes=60,
            subject_reference="Patient/k-1",
            hospital_stay_reference="Encounter/e-1",
            practitioner_reference=PEER,
            peer_id="p-1",
            peer_name="Robin Peer",
        )
    )


def test_a_contact_sent_as_peerway_keeps_it_gets_no_warning() -> None:
    sent = peer_contact("k-1", meta={"profile": [fhir_profiles.PEER_CONTACT_PROFILE]})
    sent["participant"] = stored()["participant"]
    assert contact_changes(sent, stored()) == ()


@pytest.mark.parametrize(
    ("extra", "expression", "code"),
    [
        ({"identifier": [{"system": "urn:x", "value": SECRET}]}, "Encounter.identifier[0]", "informational"),
        ({"participant": [{"individual": {"reference": f"Practitioner/{SECRET}"}}]}, "Encounter.participant[0]",
         "business-rule"),
        ({"participant": [{"individual": {"reference": PEER}}]}, "Encounter.participant[0].type", "business-rule"),
        ({"class": {"system": build.V3_ACT_CODE, "code": "AMB"}}, "Encounter.class", "business-rule"),
        ({"partOf": {"reference": f"Encounter/{SECRET}"}}, "Encounter.partOf", "business-rule"),
        ({"id": SECRET}, "Encounter.id", "informational"),
        ({"subject": {"reference": "Patient/k-1", "display": SECRET}}, "Encounter.subject", "not-supported"),
        ({"meta": {"tag": [{"code": SECRET}]}}, "Encounter.meta", "not-supported"),
        ({"serviceProvider": {"reference": f"Organization/{SECRET}"}}, "Encounter.serviceProvider", "not-supported"),
        ({"type": [{"coding": [{"system": fhir_profiles.PEER_CONTACT_KIND_SYSTEM, "code": "community-visit"},
                               {"system": "urn:other", "code": SECRET}]}]}, "Encounter.type[0]", "not-supported"),
    ],
)  # fmt: skip
def test_each_element_not_kept_is_one_warning_naming_it(extra: dict[str, Any], expression: str, code: str) -> None:
    sent = peer_contact("k-1") | extra
    changes = contact_changes(sent, stored())
    assert [(c.expression, c.code) for c in changes] == [(expression, code)]
    said = outcome("Encounter/c-1 created", changes)
    assert [i["severity"] for i in said["issue"]] == ["information", "warning"]
    assert SECRET not in str(said)
    assert SECRET not in warning_header(changes)
    warning_header(changes).encode("latin-1")  # fit for an HTTP header


def test_every_contact_is_part_of_the_hospital_stay() -> None:
    for kind in ContactKind:
        assert stored(kind)["partOf"] == {"reference": "Encounter/e-1"}
