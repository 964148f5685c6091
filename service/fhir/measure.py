"""The outcomes as FHIR: which Measure an $evaluate-measure names and for which period (read), and the
MeasureReport answering it (built), summary with strata by site; and the AuditEvent of each report's generation.

Counts and durations only. Small cells are withheld as domain/small_cells.py decides (a stratum, or the group's
total, counts and score together), marked with the data-absent-reason "masked".
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any

import fhir_profiles
from service.domain.outcomes import BANDS, NONE_YET, Period, SiteOutcomes
from service.domain.small_cells import withheld
from service.errors import InvalidResource, NotFound
from service.fhir.build import PEERWAY_DEVICE, fhir_instant
from service.fhir.dates import optional_instant

POPULATION = "http://terminology.hl7.org/CodeSystem/measure-population"
UCUM = "http://unitsofmeasure.org"
DATA_ABSENT = "http://hl7.org/fhir/StructureDefinition/data-absent-reason"
UNIT_NAMES = {"d": "days", "min": "minutes"}
MEASURE_VERSION = "0.1.0"  # fhir_profiles/data/Measure-*.json


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
    num: Callable[[SiteOutcomes], int], den: Callable[[SiteOutcomes], int], base: Callable[[SiteOutcomes], int]
) -> Callable[[SiteOutcomes], Figures]:
    """A proportion or ratio: its initial population, denominator and numerator."""
    return lambda o: Figures(
        {"initial-population": base(o), "denominator": den(o), "numerator": num(o)}, _ratio(num(o), den(o))
    )


def _first_contact(o: SiteOutcomes) -> Figures:
    """Continuous variable: one observation (days to first contact) per discharge with a contact; the median."""
    median = o.median_first_contact_days
    contacted = len(o.first_contact_days)
    pops = {"initial-population": o.discharged, "measure-population": contacted, "measure-observation": contacted}
    return Figures(pops, None if median is None else round(median, 2), "d")


def _minutes(o: SiteOutcomes) -> Figures:
    """Continuous variable: one observation (its minutes) per client-week; the mean. Minutes are no population."""
    weeks = o.client_weeks
    pops = {"initial-population": weeks, "measure-population": weeks, "measure-observation": weeks}
    return Figures(pops, _ratio(o.minutes, weeks), "min")


# Measure id (fhir_profiles/data/Measure-<id>.json) -> its figures from one site's (or all sites') outcomes.
INDICATORS: dict[str, Callable[[SiteOutcomes], Figures]] = {
    "discharged-into-program": _cohort(lambda o: o.discharged),
    "time-to-first-contact": _first_contact,
    "contacts-per-client-week": _fraction(lambda o: o.contacts, lambda o: o.client_weeks, lambda o: o.client_weeks),
    "minutes-per-client-week": _minutes,
    "client-weeks-meeting-minimum": _fraction(
        lambda o: o.weeks_meeting_minimum, lambda o: o.client_weeks, lambda o: o.client_weeks
    ),
    "readmission-30-day": _fraction(lambda o: o.readmitted_30, lambda o: o.followed_30, lambda o: o.discharged),
    "readmission-90-day": _fraction(lambda o: o.readmitted_90, lambda o: o.followed_90, lambda o: o.discharged),
    "drop-outs": _cohort(lambda o: o.drop_outs),
    "rematches": _cohort(lambda o: o.rematches),
    "active-peers": _cohort(lambda o: o.active_peers),
    "peer-caseload": _fraction(lambda o: o.peer_client_pairs, lambda o: o.active_peers, lambda o: o.active_peers),
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
    wanted, bar, version = measure.partition("|")
    for prefix in (fhir_profiles.MEASURE_BASE + "/", "Measure/"):
        if wanted.startswith(prefix) and wanted.removeprefix(prefix) in INDICATORS:
            if bar and version != MEASURE_VERSION:  # a canonical's |version names one edition: only ours is here
                raise InvalidResource(f"only version {MEASURE_VERSION} of the Measures is offered", "measure")
            return wanted.removeprefix(prefix)
    raise InvalidResource(f"unknown measure {measure!r}: see {fhir_profiles.MEASURE_BASE}/<id>", "measure")


def _month_start(t: datetime) -> bool:
    return t.day == 1 and t.time() == time(0) and t.utcoffset() == timedelta(0)


def read_evaluation(
    measure_id: str, period_start: str | None, period_end: str | None, report_type: str | None
) -> Evaluation:
    """Check the parameters: both period bounds (FHIR dates or dateTimes, the end inclusive), whole calendar months
    in UTC (start on a 1st, end on a month's last day: two overlapping periods then differ by whole months, never
    by a day that would single out one event), at most three years, and reportType population (or none): the only
    one offered, since a subject or subject-list report would name clients."""
    if report_type not in (None, "population"):
        raise InvalidResource(
            "only reportType=population is offered (counts, no individuals): subject and subject-list are not",
            "reportType",
        )
    if not period_start:
        raise InvalidResource("periodStart is required", "periodStart")
    if not period_end:
        raise InvalidResource("periodEnd is required", "periodEnd")
    try:
        start = optional_instant(period_start, "periodStart")
    except OverflowError:
        raise InvalidResource("periodStart is out of range", "periodStart") from None
    try:
        end = optional_instant(period_end, "periodEnd", end=True)
        assert end is not None
        end += timedelta(microseconds=1)  # exclusive from here on
    except OverflowError:
        raise InvalidResource("periodEnd is out of range", "periodEnd") from None
    assert start is not None
    if not _month_start(start):
        raise InvalidResource("periodStart must be the first day of a month (UTC): whole months only", "periodStart")
    if not _month_start(end):
        raise InvalidResource("periodEnd must be the last day of a month (UTC): whole months only", "periodEnd")
    if end <= start:
        raise InvalidResource("periodEnd is before periodStart", "periodEnd")
    if end - start > timedelta(days=3 * 366):
        raise InvalidResource("a period of at most three years", "periodEnd")
    return Evaluation(measure_id, Period(start, end), period_start, period_end)


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
        score |= {"unit": UNIT_NAMES.get(figures.unit, figures.unit), "system": UCUM, "code": figures.unit}
    return score


def _masked(figures: Figures) -> list[dict[str, Any]]:
    absent = {"extension": [{"url": DATA_ABSENT, "valueCode": "masked"}]}
    return [{"code": p["code"], **absent} for p in _populations(figures)]


def _shown(figures: Figures, hidden: bool) -> dict[str, Any]:
    """A group's or stratum's populations and score, or the populations marked masked (no score)."""
    if hidden:
        return {"population": _masked(figures)}
    out: dict[str, Any] = {"population": _populations(figures)}
    score = _score(figures)
    if score is not None:
        out["measureScore"] = score
    return out


def band_figures(o: SiteOutcomes) -> list[tuple[str, Figures]]:
    """The first-contact distribution as strata: discharges by days band (and none yet)."""
    bands = o.first_contact_bands
    labels = [b[0] for b in BANDS] + [NONE_YET]
    return [(label, Figures({"initial-population": bands[label]}, None)) for label in labels]


def stratifiers_of(
    measure_id: str,
    total: SiteOutcomes,
    per_site: Mapping[str, SiteOutcomes],
    per_organization: Mapping[str, SiteOutcomes] | None,
) -> list[tuple[str, list[tuple[str, Figures]]]]:
    """(stratifier name, [(stratum label, figures)]) of one measure, as reported."""
    figure = INDICATORS[measure_id]
    out = [("site", [(site, figure(per_site[site])) for site in sorted(per_site)])]
    if per_organization is not None:
        out.append(("organization", [(org, figure(per_organization[org])) for org in sorted(per_organization)]))
    if measure_id == "time-to-first-contact":
        out.append(("days-band", band_figures(total)))
    return out


def masking(
    overall: Figures, stratifiers: list[tuple[str, list[tuple[str, Figures]]]], threshold: int
) -> tuple[bool, list[list[bool]]]:
    """What to withhold (domain/small_cells.py): the total, and each stratum."""
    return withheld(overall.populations, [[f.populations for _, f in strata] for _, strata in stratifiers], threshold)


def measure_report(
    evaluation: Evaluation,
    total: SiteOutcomes,
    per_site: Mapping[str, SiteOutcomes],
    small_cell: int,
    report_id: str,
    now: datetime,
    per_organization: Mapping[str, SiteOutcomes] | None = None,
) -> dict[str, Any]:
    """A summary MeasureReport (reportType population): the period's figures for every site in scope, then one
    stratum per site (and per peer organization, when given); small cells withheld. Pending while the period has
    not ended: its figures can still change."""
    overall = INDICATORS[evaluation.measure_id](total)
    stratifiers = stratifiers_of(evaluation.measure_id, total, per_site, per_organization)
    hide_total, hide = masking(overall, stratifiers, small_cell)
    group = _shown(overall, hide_total)
    group["stratifier"] = [
        {
            "code": [{"text": name}],
            "stratum": [
                {"value": {"text": label}, **_shown(figures, hidden)}
                for (label, figures), hidden in zip(strata, hidden_strata, strict=True)
            ],
        }
        for (name, strata), hidden_strata in zip(stratifiers, hide, strict=True)
    ]
    return {
        "resourceType": "MeasureReport",
        "id": report_id,
        "status": "pending" if evaluation.period.end > now else "complete",
        "type": "summary",
        "measure": f"{fhir_profiles.MEASURE_BASE}/{evaluation.measure_id}",
        "date": fhir_instant(now),
        "reporter": {"display": "Peerway"},
        "period": {"start": evaluation.start_text, "end": evaluation.end_text},
        "group": [group],
    }


def requestor(actor: str) -> dict[str, Any]:
    """Who asked, as a FHIR Reference: managers and coordinators have no FHIR resource here, so the reference is by
    identifier (system per role, value the subject their sign-in names), never a made-up "role/id" path."""
    role, _, subject = actor.partition("/")
    return {"identifier": {"system": f"{fhir_profiles.CANONICAL}/sid/{role}", "value": subject}, "display": role}


def report_audit_event(
    audit_id: str, measure_ids: list[str], actor: str, sites: list[str], period: Period, now: datetime
) -> dict[str, Any]:
    """An R4 AuditEvent for one outcomes report's generation: who (`role/subject`), which measures, which sites
    and period."""
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
            {"who": requestor(actor), "altId": actor.partition("/")[2], "requestor": True},
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
