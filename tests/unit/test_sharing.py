"""Nothing a Decision withholds ever appears in a summary, whatever mix of categories is permitted."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from consent import DataCategory, Decision, ItemDecision, RequestedItem
from service.app.sharing import HELD, Holdings, disclosed_resources
from service.fhir import build
from service.store.models import Client, Episode
from tests.conftest import fixture_json

BUNDLE = fixture_json("davinci/davinci-alerts-discharge-notification-message-bundle-01.json")
PATIENT = BUNDLE["entry"][2]["resource"] | {
    "extension": [
        *BUNDLE["entry"][2]["resource"]["extension"],
        {"url": build.PRONOUNS_EXTENSION, "valueCodeableConcept": {"text": "she/her"}},
    ]
}
NOW = datetime(2026, 11, 26, tzinfo=UTC)
HOLDINGS = Holdings.of(
    Client(id="c", site="s", ehr_patient_id="p", patient_json=json.dumps(PATIENT), created_at=NOW, updated_at=NOW),
    Episode(
        id="e",
        client_id="c",
        ehr_encounter_id="x",
        state="in-community",
        admitted_at=NOW,
        discharged_at=NOW,
        discharge_disposition="1",
        encounter_json=json.dumps(BUNDLE["entry"][1]["resource"]),
        peer_id="peer",
        assigned_at=NOW,
        created_at=NOW,
        updated_at=NOW,
    ),
)
# The Patient elements each category may put in a summary; anything else must never appear.
PATIENT_ELEMENTS = {
    DataCategory.PREFERRED_NAME: {"name", "extension", "communication"},
    DataCategory.CONTACT_DETAILS: {"telecom", "address"},
}


@given(permitted=st.sets(st.sampled_from(HELD)), repeat=st.sets(st.sampled_from(HELD)))
def test_only_permitted_categories_reach_the_summary(permitted: set[DataCategory], repeat: set[DataCategory]) -> None:
    # A category asked twice with one denial counts as withheld.
    items = [ItemDecision(RequestedItem(c), c in permitted, None, None, "r") for c in HELD]
    items += [ItemDecision(RequestedItem(c), False, None, None, "r") for c in repeat]
    decision = Decision(items=tuple(items))
    shared = permitted - repeat
    resources = {r["resourceType"]: r for r in disclosed_resources(decision, HOLDINGS)}
    allowed = {"resourceType", "id"}.union(*(PATIENT_ELEMENTS.get(c, set()) for c in shared))
    if "Patient" in resources:
        assert set(resources["Patient"]) <= allowed
        assert set(resources["Patient"]) != {"resourceType", "id"}
    assert ("Patient" in resources) == bool(shared & set(PATIENT_ELEMENTS))
    assert ("Encounter" in resources) == (DataCategory.ADMISSION_DISCHARGE in shared)
    if DataCategory.PREFERRED_NAME in shared:
        assert [e["url"] for e in resources["Patient"].get("extension", [])] == [build.PRONOUNS_EXTENSION]
