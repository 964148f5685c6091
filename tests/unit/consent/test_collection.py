"""Which categories Peerway may fetch at all: those some current, active consent of the client could release."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from consent import CATEGORY_SYSTEM, Coding, ConsentRecord, DataCategory, Identifier, Period, Provision
from consent.collection import releasable

NOW = datetime(2026, 12, 1, tzinfo=UTC)
PATIENT = "Patient/c1"
SOURCES = {DataCategory.UPCOMING_APPOINTMENTS: "Appointment", DataCategory.RECOVERY_GOALS: "Goal"}
NON_EXPLICIT = frozenset(DataCategory) - {DataCategory.DIAGNOSIS, DataCategory.CLINICAL_NOTES}


def code(category: DataCategory) -> Coding:
    return Coding(CATEGORY_SYSTEM, category.value)


def consent(provision: Provision | None, **kw: object) -> ConsentRecord:
    fields: dict[str, object] = {
        "id": "k1",
        "status": "active",
        "scope": "patient-privacy",
        "patient": PATIENT,
        "date_time": NOW,
        "provision": provision,
    }
    return ConsentRecord(**(fields | kw))  # type: ignore[arg-type]


CASES = [
    ("no consent", [], frozenset()),
    (
        "a permit of two categories",
        [consent(Provision("permit", codes=(code(DataCategory.RECOVERY_GOALS),)))],
        {DataCategory.RECOVERY_GOALS},
    ),
    ("a permit without codes: everything but diagnosis and notes", [consent(Provision("permit"))], NON_EXPLICIT),
    (
        "diagnosis only when named",
        [consent(Provision("permit", codes=(code(DataCategory.DIAGNOSIS),)))],
        {DataCategory.DIAGNOSIS},
    ),
    ("a deny releases nothing", [consent(Provision("deny"))], frozenset()),
    (
        "a permit nested under a deny counts",
        [consent(Provision("deny", provisions=(Provision("permit", codes=(code(DataCategory.RECOVERY_GOALS),)),)))],
        {DataCategory.RECOVERY_GOALS},
    ),
    ("an inactive consent", [consent(Provision("permit"), status="inactive")], frozenset()),
    ("another patient's consent", [consent(Provision("permit"), patient="Patient/c2")], frozenset()),
    ("a treatment consent", [consent(Provision("permit"), scope="treatment")], frozenset()),
    (
        "an expired permit",
        [
            consent(
                Provision("permit", period=Period(datetime(2025, 1, 1, tzinfo=UTC), datetime(2025, 6, 1, tzinfo=UTC)))
            )
        ],
        frozenset(),
    ),
    (
        "a permit by class: the categories held in that type",
        [consent(Provision("permit", classes=(Coding("http://hl7.org/fhir/resource-types", "Goal"),)))],
        {DataCategory.RECOVERY_GOALS},
    ),
    (
        "codes of another system name nothing",
        [consent(Provision("permit", codes=(Coding("http://loinc.org", "11450-4"),)))],
        frozenset(),
    ),
    (
        "a withdrawn agreement (newer inactive version) counts no more",
        [
            consent(Provision("permit"), identifiers=(Identifier("urn:x", "1"),)),
            consent(
                Provision("permit"),
                id="k2",
                status="inactive",
                identifiers=(Identifier("urn:x", "1"),),
                recorded_at=datetime(2026, 12, 2, tzinfo=UTC),
            ),
        ],
        frozenset(),
    ),
]


@pytest.mark.parametrize(("consents", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_releasable(consents: list[ConsentRecord], expected: frozenset[DataCategory]) -> None:
    assert releasable(consents, PATIENT, NOW, SOURCES) == frozenset(expected)
