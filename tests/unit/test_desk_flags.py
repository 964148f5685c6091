"""Which Today list an episode is counted in (service/app/desk.py), one case per flag and its edges."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from service.app.desk import today_flags
from service.store.models import Episode

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def episode(**fields: Any) -> Episode:
    base: dict[str, Any] = {
        "id": "e1",
        "client_id": "c1",
        "ehr_encounter_id": "enc",
        "state": "in-community",
        "admitted_at": NOW - 20 * DAY,
        "discharged_at": NOW - 10 * DAY,
        "discharge_disposition": None,
        "encounter_json": "{}",
        "peer_id": "p1",
        "assigned_at": NOW - 9 * DAY,
        "created_at": NOW - 20 * DAY,
        "updated_at": NOW - 9 * DAY,
        "readmission": False,
        "expected_discharge_at": None,
    }
    return Episode(**{**base, **fields})


@pytest.mark.parametrize(
    ("fields", "closed", "last_contact", "expected"),
    [
        ({}, False, NOW - 2 * DAY, set()),
        # "No contact" is the safety net's alert alone (below), never the desk's own count of days.
        ({}, False, NOW - 8 * DAY, set()),
        ({}, False, None, set()),
        ({}, True, None, set()),  # an ended episode needs nothing
        ({"discharged_at": NOW - 2 * DAY, "peer_id": None, "assigned_at": None}, False, None,
         {"new-discharge", "waiting"}),
        # an old discharge whose message just arrived, not yet handled
        ({"discharged_at": NOW - 400 * DAY, "updated_at": NOW - DAY, "peer_id": None, "assigned_at": None}, False, None,
         {"new-discharge", "waiting"}),
        ({"discharged_at": NOW - 2 * DAY, "assigned_at": NOW - DAY}, False, None, {"new-discharge"}),
        ({"state": "on-ward", "discharged_at": None, "expected_discharge_at": NOW + 3 * DAY}, False, None,
         {"upcoming-discharge"}),
        ({"state": "on-ward", "discharged_at": None, "expected_discharge_at": NOW - 2 * DAY}, False, None,
         {"upcoming-discharge"}),  # overdue: the discharge may not have been sent
        ({"state": "on-ward", "discharged_at": None, "expected_discharge_at": NOW + 30 * DAY}, False, None, set()),
        ({"state": "on-ward", "discharged_at": None, "readmission": True}, False, None, {"readmission"}),
    ],
)  # fmt: skip
def test_today_flags(fields: dict[str, Any], closed: bool, last_contact: datetime | None, expected: set[str]) -> None:
    assert today_flags(episode(**fields), closed, last_contact, NOW) == expected


def test_no_contact_is_the_safety_nets_open_alert() -> None:
    assert today_flags(episode(), False, NOW - 2 * DAY, NOW, no_contact_alert=True) == {"no-contact"}
    assert today_flags(episode(), True, None, NOW, no_contact_alert=True) == set()  # ended: needs nothing
