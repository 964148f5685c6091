"""The program's outcomes: Measure/$evaluate-measure (GET or POST, a summary MeasureReport stratified by site),
CSV for a spreadsheet, and charts (SVG or PNG). A site's coordinator gets their site's figures; an administrator
(the program's manager) every site's. Each generation is audited."""

from __future__ import annotations

from typing import Annotated

from anyio import CapacityLimiter, to_thread
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from service.api import fhir_rest
from service.api.deps import SessionsDep, SettingsDep, read_body, require
from service.api.responses import FhirResponse
from service.app import charts, outcomes
from service.auth import Principal, Role
from service.errors import BadRequest, NotFound
from service.fhir import measure as fhir
from service.fhir.operation import operation_parameters

router = APIRouter(tags=["outcomes"])
Manager = Annotated[Principal, Depends(require(Role.COORDINATOR, Role.ADMINISTRATOR))]


async def _known_query(request: Request) -> None:
    """A GET $evaluate-measure names only the parameters offered: subject= (a report about one client) or anything
    else unknown is refused, as the POST form refuses it, rather than ignored."""
    for name in request.query_params:
        if name not in fhir.EVALUATE_PARAMETERS and name not in ("_format", "_pretty"):
            raise BadRequest(f"$evaluate-measure takes no parameter {name[:64]!r}", name[:64])


FHIR_JSON = [Depends(fhir_rest.json_only)]
GET_JSON = [*FHIR_JSON, Depends(_known_query)]
TYPE_LEVEL = "/fhir/Measure/$evaluate-measure"
INSTANCE_LEVEL = "/fhir/Measure/{measure_id}/$evaluate-measure"
Text = Annotated[str | None, Query(max_length=200)]
CHART_MEASURES = {
    "time-to-first-contact": "time-to-first-contact",
    "readmissions": "readmission-30-day",
    "contact-minutes": "minutes-per-client-week",
}


def _site(caller: Principal) -> str | None:
    return caller.site if caller.role is Role.COORDINATOR else None


def _actor(caller: Principal) -> str:
    return f"{caller.role.value}/{caller.subject}"


async def _report(
    sessions: SessionsDep, settings: SettingsDep, caller: Principal, measure_id: str, given: dict[str, str | None]
) -> FhirResponse:
    evaluation = fhir.read_evaluation(measure_id, given["periodStart"], given["periodEnd"], given["reportType"])
    report = await outcomes.evaluate_measure(sessions, settings, evaluation, site=_site(caller), actor=_actor(caller))
    return FhirResponse(report)


@router.get(TYPE_LEVEL, dependencies=GET_JSON, response_class=FhirResponse, summary="Evaluate a measure")
async def evaluate(
    caller: Manager,
    sessions: SessionsDep,
    settings: SettingsDep,
    measure: Text = None,
    periodStart: Text = None,  # FHIR's parameter names
    periodEnd: Text = None,
    reportType: Text = None,
) -> FhirResponse:
    given = {"periodStart": periodStart, "periodEnd": periodEnd, "reportType": reportType}
    return await _report(sessions, settings, caller, fhir.measure_id_of(measure, None), given)


@router.get(INSTANCE_LEVEL, dependencies=GET_JSON, response_class=FhirResponse, summary="Evaluate it")
async def evaluate_instance(
    measure_id: str,
    caller: Manager,
    sessions: SessionsDep,
    settings: SettingsDep,
    periodStart: Text = None,  # FHIR's parameter names
    periodEnd: Text = None,
    reportType: Text = None,
) -> FhirResponse:
    given = {"periodStart": periodStart, "periodEnd": periodEnd, "reportType": reportType}
    return await _report(sessions, settings, caller, fhir.measure_id_of(None, measure_id), given)


async def _posted(request: Request, settings: SettingsDep) -> dict[str, str | None]:
    parameters = operation_parameters(await read_body(request, settings), "evaluate-measure", fhir.EVALUATE_PARAMETERS)
    return {name: fhir.posted_text(parameters, name) for name in fhir.EVALUATE_PARAMETERS}


@router.post(TYPE_LEVEL, dependencies=FHIR_JSON, response_class=FhirResponse, summary="Evaluate (POST)")
async def evaluate_posted(
    request: Request, caller: Manager, sessions: SessionsDep, settings: SettingsDep
) -> FhirResponse:
    given = await _posted(request, settings)
    return await _report(sessions, settings, caller, fhir.measure_id_of(given["measure"], None), given)


@router.post(INSTANCE_LEVEL, dependencies=FHIR_JSON, response_class=FhirResponse, summary="Evaluate (POST)")
async def evaluate_instance_posted(
    measure_id: str, request: Request, caller: Manager, sessions: SessionsDep, settings: SettingsDep
) -> FhirResponse:
    given = await _posted(request, settings)
    return await _report(sessions, settings, caller, fhir.measure_id_of(None, measure_id), given)


async def _period_report(
    sessions: SessionsDep,
    settings: SettingsDep,
    caller: Principal,
    start: str | None,
    end: str | None,
    measure_ids: list[str],
) -> outcomes.Report:
    evaluation = fhir.read_evaluation("discharged-into-program", start, end, None)
    return await outcomes.compute(
        sessions, settings, evaluation.period, site=_site(caller), actor=_actor(caller), measure_ids=measure_ids
    )


@router.get("/api/outcomes.csv", summary="Every indicator for the period, as CSV (small strata suppressed)")
async def outcomes_csv(
    caller: Manager,
    sessions: SessionsDep,
    settings: SettingsDep,
    periodStart: Text = None,  # FHIR's parameter names
    periodEnd: Text = None,
) -> Response:
    report = await _period_report(sessions, settings, caller, periodStart, periodEnd, list(fhir.INDICATORS))
    body = outcomes.outcomes_csv(report, settings.outcomes_small_cell)
    disposition = {"Content-Disposition": 'attachment; filename="peerway-outcomes.csv"'}
    return Response(body, media_type="text/csv; charset=utf-8", headers=disposition)


# Charts drawn at once per process: each holds a figure in memory, and they must not take every thread of the
# pool that other sync work shares.
_CHART_THREADS = CapacityLimiter(2)


@router.get("/api/outcomes/charts/{name}", summary="A chart: time-to-first-contact, readmissions or contact-minutes")
async def chart(
    name: str,
    caller: Manager,
    sessions: SessionsDep,
    settings: SettingsDep,
    periodStart: Text = None,  # FHIR's parameter names
    periodEnd: Text = None,
) -> Response:
    """`name` is the chart and its format: readmissions.svg, contact-minutes.png ..."""
    stem, _, suffix = name.rpartition(".")
    if stem not in charts.CHARTS or suffix not in charts.MEDIA_TYPES:
        raise NotFound(f"no chart {name[:80]}: one of {', '.join(charts.CHARTS)}, as .svg or .png")
    report = await _period_report(sessions, settings, caller, periodStart, periodEnd, [CHART_MEASURES[stem]])
    # Drawn on a worker thread: a chart takes tens of milliseconds (the first in a process also imports matplotlib,
    # about a second), which would hold every other request of this process waiting on the event loop.
    fmt: charts.Format = "svg" if suffix == "svg" else "png"
    image = await to_thread.run_sync(
        charts.render, report, stem, fmt, settings.outcomes_small_cell, limiter=_CHART_THREADS
    )
    return Response(image, media_type=charts.MEDIA_TYPES[suffix])
