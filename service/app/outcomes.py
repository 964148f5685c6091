"""What a program manager is asked for: the outcomes of a period, per site, as FHIR MeasureReports, as CSV and
as charts (app/charts.py). Counts and durations only; every generation is audited (an AuditEvent row, like a
disclosure's).

Scope: a site's coordinator gets their own site's figures; an administrator (the program's manager) every site's,
each a stratum. Neither ever sees a client named here.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from service.app.clock import new_id, utcnow
from service.domain.outcomes import Period, SiteOutcomes, combined, organization_of, outcomes_by_site
from service.fhir import build
from service.fhir import measure as fhir
from service.settings import Settings
from service.store import alerts as facts
from service.store import sites as site_store
from service.store.db import SessionFactory, transaction
from service.store.models import AuditRecord

READMISSION_DAYS = 90  # the longest readmission window a Measure looks at
_LAST_YEAR = timedelta(days=366)  # near the calendar's end (year 9999) no readmission can follow anyway
NO_CLIENT = ""  # the audit row's client: a report is about no one client


@dataclass(frozen=True)
class Report:
    period: Period
    as_of: datetime
    per_site: dict[str, SiteOutcomes]
    total: SiteOutcomes
    per_organization: dict[str, SiteOutcomes]


async def compute(
    sessions: SessionFactory,
    settings: Settings,
    period: Period,
    *,
    site: str | None,
    actor: str,
    measure_ids: Sequence[str],
    as_of: datetime | None = None,
) -> Report:
    """The period's outcomes as known now (one site's, or with `site` None every site's), audited in the same
    transaction that read them."""
    now = utcnow()
    as_of = min(as_of or now, now)
    async with transaction(sessions) as session:
        # Only what the period can count: episodes not over by its start (those are done: no week, discharge,
        # ending or assignment of theirs falls in it) and begun before its end + 90 days (readmissions).
        horizon = READMISSION_DAYS if period.end < datetime.max.replace(tzinfo=UTC) - _LAST_YEAR else 0
        episodes = await facts.episode_facts(
            session, site, open_at=period.start, started_before=period.end + timedelta(days=horizon)
        )
        minimums = await facts.weekly_minimums(session)
        names = [site] if site else [s.id for s in await site_store.sites(session) if s.status == "active"]
        per_site = outcomes_by_site(episodes, period, as_of, minimums, settings.weekly_minimum_minutes, names)
        per_site = {s: o for s, o in per_site.items() if site is None or s == site}
        organizations = {p.id: p.organization for p in await facts.peer_facts(session)}
        per_organization = outcomes_by_site(
            episodes,
            period,
            as_of,
            minimums,
            settings.weekly_minimum_minutes,
            group=organization_of(organizations),
        )
        audit = fhir.report_audit_event(new_id(), list(measure_ids), actor, sorted(per_site), period, now)
        session.add(
            AuditRecord(
                id=audit["id"],
                client_id=NO_CLIENT,
                actor=actor,
                outcome=audit["outcome"],
                recorded_at=now,
                resource_json=build.to_json(audit),
            )
        )
    return Report(period, as_of, per_site, combined(per_site), per_organization)


async def evaluate_measure(
    sessions: SessionFactory, settings: Settings, evaluation: fhir.Evaluation, *, site: str | None, actor: str
) -> dict[str, Any]:
    """Measure/$evaluate-measure: a summary MeasureReport with one stratum per site (small cells suppressed)."""
    report = await compute(
        sessions, settings, evaluation.period, site=site, actor=actor, measure_ids=[evaluation.measure_id]
    )
    return fhir.measure_report(
        evaluation,
        report.total,
        report.per_site,
        settings.outcomes_small_cell,
        new_id(),
        report.as_of,
        report.per_organization,
    )


def _rows(name: str, stratum: str, figures: fhir.Figures, hidden: bool) -> list[list[str]]:
    rows = [[name, stratum, code, "suppressed" if hidden else str(n)] for code, n in figures.populations.items()]
    if figures.score is not None or hidden:
        rows.append([name, stratum, "score", "suppressed" if hidden else str(figures.score)])
    return rows


def outcomes_csv(report: Report, small_cell: int) -> str:
    """Every indicator, long format (measure, stratum, item, value): all sites together, then each site, each
    peer organization and (time to first contact) each days band, withheld exactly as in the MeasureReport: a
    small stratum, a second one beside it, or the total when small (domain/small_cells.py)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["measure", "stratum", "item", "value"])
    for name, figure in fhir.INDICATORS.items():
        overall = figure(report.total)
        stratifiers = fhir.stratifiers_of(name, report.total, report.per_site, report.per_organization)
        hide_total, hide = fhir.masking(overall, stratifiers, small_cell)
        writer.writerows(_rows(name, "all", overall, hide_total))
        for (stratifier, strata), hidden in zip(stratifiers, hide, strict=True):
            for (label, figures), masked in zip(strata, hidden, strict=True):
                writer.writerows(_rows(name, f"{stratifier}={label}", figures, masked))
    return out.getvalue()
