"""The outcomes as FHIR: which Measure an $evaluate-measure names and for which period (read), and the
MeasureReport answering it (built), summary with strata by site; and the AuditEvent of each report's generation.

Counts and durations only. A stratum counting fewer than the small-number threshold (but more than none) in any
population is suppressed whole, counts and score, and marked with the data-absent-reason "masked": withholding
only the small count would leave it computable from the others.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import fhir_profiles
from service.domain.outcomes import BANDS, NONE_YET, Period, SiteOutcomes
from service.errors import InvalidResource, NotFound
from service.fhir.build import PEERWAY_DEVICE, fhir_instant
from service.fhir.dates import optional_instant

POPULATION = "http://terminology.hl7.org/CodeSystem/measure-population"
UCUM = "http://unitsofmeasure.org"
DATA_ABSENT = "http://hl7.org/fhir/StructureDefinition/data-absent-reason"


@dataclass(frozen=True)
class Figures:
    populations: dict[str, int]  # measure-population code -> count
    score: float | None
    unit: str | None = None  # a UCUM code


def _ratio(numerator: int, denominator: int) -> float | None:
    return round(numerator / denominator, 4) if denominator else None


def _cohort(count: Callable[[SiteOutcomes], int]) -> Callable[[SiteOutcomes], Figures]:
    return lambda o: Figures({"initial-population": count(o)}, None)


def _fraction(
    num: Callable[[SiteOutcomes], int], den: Callable[[SiteOutcomes], int]
) -> Callable[[SiteOutcomes], Figures]:
    return lambda o: Figures({"denominator": den(o), "numerator": num(o)}, _ratio(num(o), den(o)))


def _first_contact(o: SiteOutcomes) -> Figures:
    median = o.median_first_contact_days
    pops = {"initial-population": o.discharged, "measure-population": len(o.first_contact_days)}
    return Figures(pops, None if median is None else round(median, 2), "d")


# Measure id (fhir_profiles/data/Measure-<id>.json) -> its figures from one site's (or all sites') outcomes.
INDICATORS: dict[str, Callable[[SiteOutcomes], Figures]] = {
    "discharged-into-program": _cohort(lambda o: o.discharged),
    "time-to-first-contact": _first_contact,
    "contacts-per-client-week": _fraction(lambda o: o.contacts, lambda o: o.client_weeks),
    "minutes-per-client-week": _fraction(lambda o: o.minutes, lambda o: o.client_weeks),
    "client-weeks-meeting-minimum": _fraction(lambda o: o.weeks_meeting_minimum, lambda o: o.client_weeks),
    "readmission-30-day": _fraction(lambda o: o.readmitted_30, lambda o: o.followed_30),
    "readmission-90-day": _fraction(lambda o: o.readmitted_90, lambda o: o.followed_90),
    "drop-outs": _cohort(lambda o: o.drop_outs),
    "rematches": _cohort(lambda o: o.rematches),
    "active-peers": _cohort(lambda o: o.active_peers),
    "peer-caseload": _fraction(lambda o: o.peer_client_pairs, lambda o: o.active_peers),
}


@dataclass(frozen=True)
class Evaluation:
    """What an $evaluate-measure asks: one measure (by id) over a period as the caller wrote it."""

    measure_id: str
    period: Period
    start_text: str
    end_text: str


def measure_id_of(measure: str | None, path_id: str | None) -> str:
    """The measure named by the instance path, or by `measure` (its canonical URL, or Measure/<id>)."""
    if path_id is not None:
        if path_id not in INDICATORS:
            raise NotFound(f"no Measure/{path_id}")
        return path_id
    if not measure:
        raise InvalidResource(
            "name the measure: measure=<canonical url> (or Measure/<id>/$evaluate-measure)", "measure"
        )
    wanted = measure.split("|")[0]
    for prefix in (fhir_profiles.MEASURE_BASE + "/", "Measure/"):
        if wanted.startswith(prefix) and wanted.removeprefix(prefix) in INDICATORS:
            return wanted.removeprefix(prefix)
    raise InvalidResource(f"unknown measure {measure!r}: see {fhir_profiles.MEASURE_BASE}/<id>", "measure")


def read_evaluation(
    measure_id: str, period_start: str | None, period_end: str | None, report_type: str | None
) -> Evaluation:
    """Check the parameters: both period bounds (FHIR dates or dateTimes, the end inclusive), start before end,
    and reportType summary (the only one offered: a report about individuals would name them)."""
    if report_type not in (None, "summary"):
        raise InvalidResource("only reportType=summary is offered (counts, no individuals)", "reportType")
    if not period_start:
        raise InvalidResource("periodStart is required", "periodStart")
    if not period_end:
        raise InvalidResource("periodEnd is required", "periodEnd")
    start = optional_instant(period_start, "periodStart")
    end = optional_instant(period_end, "periodEnd", end=True)
    assert start is not None
    assert end is not None
    end += timedelta(microseconds=1)  # exclusive from here on
    if end <= start:
        raise InvalidResource("periodEnd is before periodStart", "periodEnd")
    if end - start > timedelta(days=3 * 366):
        raise InvalidResource("a period of at most three years", "periodEnd")
    return Evaluation(measure_id, Period(start, end), period_start, period_end)


def _small(figures: Figures, threshold: int) -> bool:
    return any(0 < n < threshold for n in figures.populations.values())


def _populations(figures: Figures) -> list[dict[str, Any]]:
    return [
        {"code": {"coding": [{"system": POPULATION, "code": code}]}, "count": n}
        for code, n in figures.populations.items()
    ]


def _score(figures: Figures) -> dict[str, Any] | None:
    if figures.score is None:
        return None
    score: dict[str, Any] = {"value": figures.score}
    if figures.unit:
        score |= {"unit": "days" if figures.unit == "d" else figures.unit, "system": UCUM, "code": figures.unit}
    return score


def _stratum(label: str, figures: Figures, threshold: int) -> dict[str, Any]:
    if _small(figures, threshold):
        masked = {"extension": [{"url": DATA_ABSENT, "valueCode": "masked"}]}
        return {"value": {"text": label}, "population": [{"code": p["code"], **masked} for p in _populations(figures)]}
    stratum: dict[str, Any] = {"value": {"text": label}, "population": _populations(figures)}
    score = _score(figures)
    if score is not None:
        stratum["measureScore"] = score
    return stratum


def _band_strata(o: SiteOutcomes, threshold: int) -> list[dict[str, Any]]:
    out = []
    for label in [b[0] for b in BANDS] + [NONE_YET]:
        n = o.first_contact_bands[label]
        out.append(_stratum(label, Figures({"initial-population": n}, None), threshold))
    return out


def measure_report(
    evaluation: Evaluation,
    total: SiteOutcomes,
    per_site: Mapping[str, SiteOutcomes],
    small_cell: int,
    report_id: str,
    now: datetime,
    per_organization: Mapping[str, SiteOutcomes] | None = None,
) -> dict[str, Any]:
    """A summary MeasureReport: the period's figures for every site in scope, then one stratum per site (and per
    peer organization, when given)."""
    figure = INDICATORS[evaluation.measure_id]
    overall = figure(total)
    group: dict[str, Any] = {"population": _populations(overall)}
    score = _score(overall)
    if score is not None:
        group["measureScore"] = score
    stratifiers = [
        {
            "code": [{"text": "site"}],
            "stratum": [_stratum(site, figure(per_site[site]), small_cell) for site in sorted(per_site)],
        }
    ]
    if per_organization is not None:
        strata = [_stratum(org, figure(per_organization[org]), small_cell) for org in sorted(per_organization)]
        stratifiers.append({"code": [{"text": "organization"}], "stratum": strata})
    if evaluation.measure_id == "time-to-first-contact":
        stratifiers.append({"code": [{"text": "days-band"}], "stratum": _band_strata(total, small_cell)})
    group["stratifier"] = stratifiers
    return {
        "resourceType": "MeasureReport",
        "id": report_id,
        "status": "complete",
        "type": "summary",
        "measure": f"{fhir_profiles.MEASURE_BASE}/{evaluation.measure_id}",
        "date": fhir_instant(now),
        "reporter": {"display": "Peerway"},
        "period": {"start": evaluation.start_text, "end": evaluation.end_text},
        "group": [group],
    }


def report_audit_event(
    audit_id: str, measure_ids: list[str], actor_reference: str, sites: list[str], period: Period, now: datetime
) -> dict[str, Any]:
    """An R4 AuditEvent for one outcomes report's generation: who, which measures, which sites and period."""
    return {
        "resourceType": "AuditEvent",
        "id": audit_id,
        "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest"},
        "subtype": [{"system": "http://hl7.org/fhir/restful-interaction", "code": "operation"}],
        "action": "E",
        "recorded": fhir_instant(now),
        "outcome": "0",
        "outcomeDesc": f"outcomes report for {', '.join(sites) or 'no site'}, {fhir_instant(period.start)} to "
        f"{fhir_instant(period.end)} (exclusive); counts only",
        "agent": [
            {"who": {"reference": actor_reference}, "requestor": True},
            {"who": {"reference": PEERWAY_DEVICE}, "requestor": False},
        ],
        "source": {"observer": {"reference": PEERWAY_DEVICE}},
        "entity": [{"what": {"reference": f"Measure/{m}"}, "description": "evaluated"} for m in measure_ids],
    }


EVALUATE_PARAMETERS = ("measure", "periodStart", "periodEnd", "reportType")


def posted_text(parameters: Mapping[str, Any], name: str) -> str | None:
    """A posted Parameters entry's value as text (date, dateTime, string, code, canonical or uri)."""
    parameter = parameters.get(name)
    if parameter is None:
        return None
    for key in ("valueDate", "valueDateTime", "valueString", "valueCode", "valueCanonical", "valueUri"):
        value = parameter.get(key)
        if isinstance(value, str):
            return value
    raise InvalidResource(f"{name}: a date, dateTime or string value is expected", f"Parameters.parameter.{name}")
