"""The outcome charts, drawn server-side with matplotlib's Agg backend (no display, thread-safe per figure):
time to first contact, readmissions over time, contact minutes per client-week. Built from a Report's totals
only; a bar or point resting on fewer than the small-number threshold is left out.

matplotlib is imported on the first chart drawn, not with the module: it is about half a second of every API
process's start (and of every `peerway serve --workers N` child's), for a page program managers open rarely."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Literal

from service.app.outcomes import Report
from service.domain.small_cells import withheld
from service.errors import NotFound
from service.fhir import measure as fhir

if TYPE_CHECKING:
    from matplotlib.figure import Figure

CHARTS = ("time-to-first-contact", "readmissions", "contact-minutes")
Format = Literal["svg", "png"]
MEDIA_TYPES: dict[str, str] = {"svg": "image/svg+xml", "png": "image/png"}


def _first_contact(figure: Figure, report: Report, small: int) -> None:
    axes = figure.subplots()
    overall = fhir.INDICATORS["time-to-first-contact"](report.total)
    bands = fhir.band_figures(report.total)
    hide_total, [hidden] = fhir.masking(overall, [("days-band", bands)], small)
    labels = [label for label, _ in bands]
    shown = [0 if masked else f.populations["initial-population"] for (_, f), masked in zip(bands, hidden, strict=True)]
    axes.bar(labels, shown, color="#3b6ea5")
    axes.set_xlabel("days from discharge to first peer contact (a band under the threshold is left out)")
    axes.set_ylabel("clients discharged")
    median = report.total.median_first_contact_days
    said = median is not None and not hide_total
    axes.set_title("Time to first contact" + (f" (median {median:.1f} days)" if said else ""))


def _readmissions(figure: Figure, report: Report, small: int) -> None:
    """A month's point shows only if neither its readmitted nor its not-readmitted count is small, and a second
    month is left out beside a lone one, so the year's total cannot give it back (domain/small_cells.py)."""
    axes = figure.subplots()
    by_month = report.total.readmissions_by_month
    months = sorted(by_month)
    cells = [{"denominator": by_month[m][0], "numerator": by_month[m][1]} for m in months]
    total = {"denominator": sum(c["denominator"] for c in cells), "numerator": sum(c["numerator"] for c in cells)}
    _, [hidden] = withheld(total, [cells], small)
    kept = [m for m, masked in zip(months, hidden, strict=True) if not masked and by_month[m][0] > 0]
    rates = [100 * by_month[m][1] / by_month[m][0] for m in kept]
    axes.plot(kept, rates, marker="o", color="#a53b3b")
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


def _figure_class() -> type[Figure]:
    import matplotlib

    matplotlib.use("Agg")  # no display
    from matplotlib.figure import Figure  # the object API: no pyplot, no global state between requests

    return Figure


def render(report: Report, chart: str, fmt: Format, small_cell: int) -> bytes:
    """One chart as SVG or PNG bytes."""
    draw = {"time-to-first-contact": _first_contact, "readmissions": _readmissions, "contact-minutes": _minutes}
    if chart not in draw:
        raise NotFound(f"no chart {chart}: one of {', '.join(CHARTS)}")
    figure = _figure_class()(figsize=(8, 4.5), layout="constrained")
    draw[chart](figure, report, small_cell)
    out = io.BytesIO()
    figure.savefig(out, format=fmt, dpi=100, metadata={"Date": None} if fmt == "svg" else None)
    return out.getvalue()
