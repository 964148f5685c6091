"""The test EHR's seeded client (tests/ehr/seed/discharged-client.json): the Da Vinci discharge fixture's Patient
with what a hospital holds after a psychiatric stay, its dates moved so that the appointments are upcoming."""

from __future__ import annotations

import json
import re
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx

SEED = Path(__file__).resolve().parents[1] / "ehr" / "seed" / "discharged-client.json"
ANCHOR = date(2026, 12, 1)  # the day the seed's dates were written for
PATIENT_ID = "06e1f0dd-5fbe-4480-9bb4-6b54ec02d31b"  # the fixture's Patient
_DATE = re.compile(r"^(\d{4}-\d{2}-\d{2})(.*)$")
_SHIFTED = {"start", "end", "startDate", "dueDate", "onsetDateTime", "date"}


def _shift(value: Any, days: int, key: str = "") -> Any:
    if isinstance(value, dict):
        return {k: _shift(v, days, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_shift(v, days, key) for v in value]
    if isinstance(value, str) and key in _SHIFTED and (match := _DATE.match(value)):
        return (date.fromisoformat(match.group(1)) + timedelta(days=days)).isoformat() + match.group(2)
    return value


def seeded_bundle(today: date) -> dict[str, Any]:
    """The seed as a transaction Bundle, its dates as far from `today` as they were from ANCHOR."""
    bundle: dict[str, Any] = _shift(json.loads(SEED.read_text()), (today - ANCHOR).days)
    return bundle


def seed_discharged_client(base_url: str, today: date) -> None:
    """Load the seed into the EHR at `base_url` (one transaction)."""
    response = httpx.post(base_url, json=seeded_bundle(today), headers={"Content-Type": "application/fhir+json"})
    assert response.status_code == 200, response.text
