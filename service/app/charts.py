"""The outcome charts, drawn server-side with matplotlib's Agg backend (no display, thread-safe per figure):
time to first contact, readmissions over time, contact minutes per client-week. Built from a Report's totals
only; a bar or point resting on fewer than the small-number threshold is left out."""

from __future__ import annotations

import io
from typing import Literal

import matplotlib

matplotlib.use("Agg")

from matplotlib.figure import Figure  # the object API: no pyplot, no global state between requests

from service.app.outcomes import Report
from service.domain.outcomes import BANDS, NONE_YET
from service.errors import NotFound

CHARTS = ("time-to-first-contact", "readmissions", "contact-minutes")
Format = Literal["svg", "png"]
MEDIA_TYPES: dict[str, str] = {"svg": "image/svg+xml", "png": "image/png"}


def _first_contact(figure: Figure, report: Report, small: int) -> None:
    axes = figure.subplots()
    bands = report.total.first_contact_bands
    labels = [b[0] for b in BANDS] + [NONE_YET]
    shown = [0 if 0 < bands[label] < small else bands[label] for label in labels]
    axes.bar(labels, shown, color="#3b6ea5")
    axes.set_xlabel("days from discharge to first peer contact")
    axes.set_ylabel("clients discharged")
    median = report.total.median_first_contact_days
    axes.set_title("Time to first contact" + (f" (median {median:.1f} days)" if median is not None else ""))


def _readmissions(figure: Figure, report: Report, small: int) -> None:
    axes = figure.subplots()
    months = sorted(m for m, (followed, _) in report.total.readmissions_by_month.items() if followed >= small)
    rates = [100 * report.total.readmissions_by_month[m][1] / report.total.readmissions_by_month[m][0] for m in months]
    axes.plot(months, rates, marker="o", color="#a53b3b")
    axes.set_ylim(bottom=0)
    axes.set_xlabel("month of discharge")
    axes.set_ylabel("readmitted within 30 days (%)")
    axes.set_title("30-day readmissions over time")
    axes.tick_params(axis="x", labelrotation=45)


def _minutes(figure: Figure, report: Report, small: int) -> None:
    axes = figure.subplots()
    weeks = sorted(w for w, (n, _) in report.total.minutes_by_week.items() if n >= small)
    means = [report.total.minutes_by_week[w][1] / report.total.minutes_by_week[w][0] for w in weeks]
    axes.plot(weeks, means, color="#3ba56e")
    axes.set_xlabel("week (Monday)")
    axes.set_ylabel("mean contact minutes per client-week")
    axes.set_title("Contact minutes per client-week")
    axes.tick_params(axis="x", labelrotation=45)
    if len(weeks) > 12:
        axes.set_xticks(weeks[:: max(1, len(weeks) // 12)])


def render(report: Report, chart: str, fmt: Format, small_cell: int) -> bytes:
    """One chart as SVG or PNG bytes."""
    draw = {"time-to-first-contact": _first_contact, "readmissions": _readmissions, "contact-minutes": _minutes}
    if chart not in draw:
        raise NotFound(f"no chart {chart}: one of {', '.join(CHARTS)}")
    figure = Figure(figsize=(8, 4.5), layout="constrained")
    draw[chart](figure, report, small_cell)
    out = io.BytesIO()
    figure.savefig(out, format=fmt, dpi=100, metadata={"Date": None} if fmt == "svg" else None)
    return out.getvalue()
