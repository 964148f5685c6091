"""FHIR `date` search values become an instant range, at every precision the spec allows."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from service.errors import BadRequest
from service.fhir.search import date_bounds


def at(year: int, month: int, day: int, hour: int = 0) -> datetime:
    return datetime(year, month, day, hour, tzinfo=UTC)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([], (None, None)),
        (["2026-11-26"], (at(2026, 11, 26), at(2026, 11, 27))),
        (["eq2026-11"], (at(2026, 11, 1), at(2026, 12, 1))),
        (["2026-12"], (at(2026, 12, 1), at(2027, 1, 1))),
        (["2026"], (at(2026, 1, 1), at(2027, 1, 1))),
        (["ge2026-01-01", "lt2026-02-01"], (at(2026, 1, 1), at(2026, 2, 1))),
        (["gt2026-01-01"], (at(2026, 1, 2), None)),
        (["le2026-01-31"], (None, at(2026, 2, 1))),
        (["ge2026-01-01T10:00:00Z"], (at(2026, 1, 1, 10), None)),
        (["ge2026-01-01T12:00:00+02:00"], (at(2026, 1, 1, 10), None)),
        (["ge2026-01-01", "ge2026-03-01", "lt2026-06-01", "lt2026-04-01"], (at(2026, 3, 1), at(2026, 4, 1))),
    ],
)
def test_date_values_become_ranges(values: list[str], expected: tuple[datetime | None, datetime | None]) -> None:
    assert date_bounds(values) == expected


@pytest.mark.parametrize("value", ["yesterday", "ne2026-01-01", "ge2026-01-01T10:00:00", "2026-13-01", "ap2026"])
def test_other_values_are_a_400_naming_the_parameter(value: str) -> None:
    with pytest.raises(BadRequest) as refused:
        date_bounds([value])
    assert refused.value.expression == "date"
