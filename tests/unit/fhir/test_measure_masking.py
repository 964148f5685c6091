"""Small cells stay hidden in what a manager reads: a MeasureReport, the CSV and the charts. Each case is a reader's
attack that worked before (the total minus the other strata, a proportion's denominator minus its numerator, a
coordinator's own small total, a month's readmissions from the year's total), and what they now get instead."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.app.charts import render
from service.app.outcomes import Report, outcomes_csv
from service.domain.outcomes import SiteOutcomes, combined
from service.domain.small_cells import withheld
from service.fhir.measure import measure_report, read_evaluation

SMALL = 5
UCUM = "http://unitsofmeasure.org"
NOW = datetime(2026, 6, 1, tzinfo=UTC)
YEAR = read_evaluation("drop-outs", "2025-01-01", "2025-12-31", None)


def _report(measure: str, per_site: dict[str, SiteOutcomes]) -> dict[str, Any]:
    evaluation = read_evaluation(measure, "2025-01-01", "2025-12-31", None)
    return measure_report(evaluation, combined(per_site), per_site, SMALL, "r", NOW)


def _counts(node: dict[str, Any]) -> dict[str, int | None]:
    return {p["code"]["coding"][0]["code"]: p.get("count") for p in node["population"]}


def _sites(report: dict[str, Any]) -> dict[str, dict[str, int | None]]:
    return {s["value"]["text"]: _counts(s) for s in report["group"][0]["stratifier"][0]["stratum"]}


def test_the_total_minus_the_other_sites_does_not_give_back_a_small_site() -> None:
    report = _report("drop-outs", {"north": SiteOutcomes(drop_outs=3), "south": SiteOutcomes(drop_outs=40)})
    assert _counts(report["group"][0]) == {"initial-population": 43}
    # Before: south showed 40, so north = 43 - 40 = 3. Now the second site is withheld beside it.
    assert _sites(report) == {"north": {"initial-population": None}, "south": {"initial-population": None}}
    masked = report["group"][0]["stratifier"][0]["stratum"][0]["population"][0]
    assert masked["extension"][0]["valueCode"] == "masked"


def test_a_third_site_large_enough_stays_shown_and_empty_sites_do_not_count_as_cover() -> None:
    per_site = {
        "east": SiteOutcomes(drop_outs=9),
        "north": SiteOutcomes(drop_outs=3),
        "south": SiteOutcomes(drop_outs=40),
        "west": SiteOutcomes(),
    }
    shown = _sites(_report("drop-outs", per_site))
    assert shown == {
        "east": {"initial-population": None},  # the smallest other site with anything in it
        "north": {"initial-population": None},
        "south": {"initial-population": 40},
        "west": {"initial-population": 0},
    }


def test_not_readmitted_is_a_cell_too() -> None:
    # 40 followed up, 38 readmitted: the 2 not readmitted are as identifying as 2 readmitted.
    north = SiteOutcomes(discharged=40, followed_30=40, readmitted_30=38)
    south = SiteOutcomes(discharged=50, followed_30=50, readmitted_30=20)
    report = _report("readmission-30-day", {"north": north, "south": south})
    assert _sites(report)["north"] == dict.fromkeys(("initial-population", "denominator", "numerator"))
    assert "measureScore" not in report["group"][0]["stratifier"][0]["stratum"][0]
    # The total's own not-readmitted count is 32: shown.
    assert _counts(report["group"][0]) == {"initial-population": 90, "denominator": 90, "numerator": 58}


def test_a_coordinators_own_small_total_is_masked() -> None:
    report = _report("time-to-first-contact", {"north": SiteOutcomes(discharged=3, first_contact_days=[1.0, 2.0])})
    group = report["group"][0]
    assert set(_counts(group).values()) == {None}
    assert "measureScore" not in group
    assert all(set(_counts(s).values()) <= {None, 0} for f in group["stratifier"] for s in f["stratum"])


def test_the_days_bands_and_the_contacted_count_do_not_give_back_the_uncontacted() -> None:
    days = [1.0] * 30 + [5.0] * 30
    report = _report("time-to-first-contact", {"north": SiteOutcomes(discharged=62, first_contact_days=days)})
    group = report["group"][0]
    # 62 discharged, 60 contacted: the 2 never contacted would be 62 - 60. The total is withheld, and so the band.
    assert set(_counts(group).values()) == {None}
    bands = {s["value"]["text"]: _counts(s)["initial-population"] for s in group["stratifier"][-1]["stratum"]}
    assert bands["none"] is None
    assert bands["0-2"] is None or bands["3-7"] is None  # a second band beside it


def test_minutes_are_not_a_population_count() -> None:
    report = _report("minutes-per-client-week", {"north": SiteOutcomes(client_weeks=20, minutes=1500)})
    group = report["group"][0]
    assert _counts(group) == {"initial-population": 20, "measure-population": 20, "measure-observation": 20}
    assert group["measureScore"] == {"value": 75.0, "unit": "minutes", "system": UCUM, "code": "min"}


def test_a_period_not_over_yet_is_pending() -> None:
    evaluation = read_evaluation("drop-outs", "2026-01-01", "2026-12-31", "population")
    per_site = {"north": SiteOutcomes(drop_outs=10)}
    report = measure_report(evaluation, combined(per_site), per_site, SMALL, "r", NOW)
    assert (report["status"], report["type"]) == ("pending", "summary")
    assert _report("drop-outs", per_site)["status"] == "complete"


def _csv(per_site: dict[str, SiteOutcomes]) -> dict[tuple[str, str, str], str]:
    report = Report(YEAR.period, NOW, per_site, combined(per_site), {"default": combined(per_site)})
    rows = list(csv.reader(io.StringIO(outcomes_csv(report, SMALL))))[1:]
    return {(m, s, i): v for m, s, i, v in rows}


def test_the_csv_withholds_what_the_report_withholds() -> None:
    table = _csv({"north": SiteOutcomes(drop_outs=3), "south": SiteOutcomes(drop_outs=40)})
    assert table["drop-outs", "all", "initial-population"] == "43"
    assert table["drop-outs", "site=north", "initial-population"] == "suppressed"
    assert table["drop-outs", "site=south", "initial-population"] == "suppressed"
    alone = _csv({"north": SiteOutcomes(drop_outs=3)})  # a coordinator's own small site
    assert alone["drop-outs", "all", "initial-population"] == "suppressed"


def _chart(by_month: dict[str, tuple[int, int]]) -> bytes:
    total = SiteOutcomes(readmissions_by_month=by_month)
    return render(Report(YEAR.period, NOW, {"north": total}, total, {}), "readmissions", "png", SMALL)


def test_a_month_with_few_readmissions_is_not_drawn_nor_one_beside_it() -> None:
    months = {"2025-01": (30, 10), "2025-02": (30, 2), "2025-03": (40, 12), "2025-04": (35, 11)}
    # February's 2 readmissions are too few; January (the smallest other month) goes with it.
    assert _chart(months) == _chart({"2025-03": (40, 12), "2025-04": (35, 11)})
    assert _chart(months) != _chart({"2025-01": (30, 10), "2025-03": (40, 12), "2025-04": (35, 11)})


def test_a_month_where_nearly_everyone_was_readmitted_is_not_drawn() -> None:
    months = {"2025-01": (30, 28), "2025-02": (30, 10), "2025-03": (40, 12)}
    assert _chart(months) == _chart({"2025-03": (40, 12)})


@given(st.lists(st.integers(0, 12), min_size=1, max_size=6), st.integers(2, 6))
def test_no_withheld_count_is_the_total_minus_the_shown_ones(counts: list[int], threshold: int) -> None:
    strata = [{"initial-population": n} for n in counts]
    hide_total, [hidden] = withheld({"initial-population": sum(counts)}, [strata], threshold)
    for n, masked in zip(counts, hidden, strict=True):
        if 0 < n < threshold:
            assert masked
    lone = [n for n, masked in zip(counts, hidden, strict=True) if masked and n > 0]
    assert hide_total or len(lone) != 1  # one withheld count alone would be the total minus the others


@pytest.mark.parametrize(
    ("start", "end", "element"),
    [
        ("2025-01-02", "2025-01-31", "periodStart"),
        ("2025-01-01", "2025-01-30", "periodEnd"),
        ("2025-01-01T00:00:00+02:00", "2025-01-31", "periodStart"),
        ("2025-01-01", "2025-01-31T12:00:00Z", "periodEnd"),
        ("9999-01-01", "9999-12-31", "periodEnd"),
    ],
)
def test_only_whole_months_are_evaluated(start: str, end: str, element: str) -> None:
    from service.errors import InvalidResource

    with pytest.raises(InvalidResource) as refused:
        read_evaluation("drop-outs", start, end, None)
    assert refused.value.expression == element
