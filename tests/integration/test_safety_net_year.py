"""Done-when of issue 17: a generated year at two sites, the safety net run weekly (and twice each time) with a
controlled clock, raises the planted alerts exactly once and closes them when their condition ends; the
MeasureReports' numbers match what this test recomputes on its own from the raw rows; the charts render."""

from __future__ import annotations

import csv
import io
import json
import statistics
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fhir.resources.R4B.auditevent import AuditEvent
from fhir.resources.R4B.measurereport import MeasureReport
from sqlalchemy import func, select, update

from service.app.alerts import Run, run_safety_net
from service.auth import Role
from service.settings import Settings
from service.store.alerts import Alert
from service.store.db import SessionFactory, create_engine, session_factory, transaction
from service.store.matching import Assignment, EpisodeClosure
from service.store.models import AuditRecord, Client, Contact, Episode, PeerSupporter
from tests.support.seed_year import SITES, YEAR_START, Plan, seed_year

Auth = Callable[..., dict[str, str]]
WEEK = timedelta(days=7)
YEAR_END = YEAR_START + timedelta(days=365)
# The reports ask for whole calendar months: 2025 covers every discharge of the generated year (days 0-330).
PERIOD_START = datetime(2025, 1, 1, tzinfo=UTC)
PERIOD_END = datetime(2026, 1, 1, tzinfo=UTC)
PERIOD = {"periodStart": "2025-01-01", "periodEnd": "2025-12-31"}
TICKS = [YEAR_START + j * WEEK + timedelta(hours=12) for j in range(58)]


@pytest.fixture
async def sessions(settings: Settings) -> AsyncIterator[SessionFactory]:
    engine = create_engine(settings.database_url)
    yield session_factory(engine)
    await engine.dispose()


def _at(value: datetime | None) -> datetime:
    assert value is not None
    return value


async def _alerts(sessions: SessionFactory) -> list[Alert]:
    async with sessions() as session:
        return list((await session.execute(select(Alert))).scalars())


def _subjects(alerts: list[Alert], kind: str) -> Counter[str]:
    return Counter(a.subject for a in alerts if a.kind == kind)


async def _open_with_peer(sessions: SessionFactory, peer_id: str, at: datetime) -> set[str]:
    """Episodes whose current assignment at `at` is the peer's, not closed and not followed by a readmission."""
    async with sessions() as session:
        stints = (await session.execute(select(Assignment).where(Assignment.peer_id == peer_id))).scalars().all()
        closed = {c.episode_id: c.ended_at for c in (await session.execute(select(EpisodeClosure))).scalars()}
        later = {
            e.previous_episode_id: _at(e.admitted_at)
            for e in (await session.execute(select(Episode).where(Episode.previous_episode_id.is_not(None)))).scalars()
        }
    return {
        s.episode_id
        for s in stints
        if s.started_at <= at
        and (s.ended_at is None or s.ended_at > at)
        and not (s.episode_id in closed and closed[s.episode_id] <= at)
        and not (s.episode_id in later and later[s.episode_id] <= at)
    }


async def test_a_year_of_the_safety_net(
    sessions: SessionFactory, settings: Settings, client: httpx.AsyncClient, auth: Auth
) -> None:
    async with transaction(sessions) as session:
        plan = await seed_year(session)

    for now in TICKS:
        await run_safety_net(sessions, settings, now)
        assert await run_safety_net(sessions, settings, now) == Run(0, 0)  # a second run changes nothing

    alerts = await _alerts(sessions)
    no_contact = plan.never_contacted + plan.never_assigned
    assert _subjects(alerts, "no-contact") == Counter(no_contact)
    assert _subjects(alerts, "unassigned") == Counter(plan.never_assigned)
    assert _subjects(alerts, "below-minimum") == Counter(no_contact + plan.two_low_weeks)
    assert _subjects(alerts, "supervision-overdue") == Counter([plan.lapsed_peer])
    assert _subjects(alerts, "cover-needed") == Counter()
    # Every client's alert closed by itself once the condition ended; the lapsed peer's is still open.
    assert {(a.kind, a.state, a.resolution) for a in alerts if a.kind != "supervision-overdue"} <= {
        (kind, "resolved", "condition-ended") for kind in ("no-contact", "unassigned", "below-minimum")
    }
    assert [a.state for a in alerts if a.kind == "supervision-overdue"] == ["open"]
    await _planted_alerts_open_and_close_on_time(sessions, alerts, plan)
    # The coordinator of each site sees only that site's alerts.
    async with sessions() as session:
        site_of = dict((await session.execute(select(Episode.id, Client.site).join(Client))).all())
    assert all(a.site == site_of[a.subject] for a in alerts if a.site is not None)

    # A peer pauses at the end: their current clients are listed for cover, once; resuming closes the alerts.
    end = TICKS[-1] + timedelta(days=1)
    holding = {p: await _open_with_peer(sessions, p, end) for p in plan.peers["north"]}
    paused = max(holding, key=lambda p: len(holding[p]))
    assert holding[paused]
    async with transaction(sessions) as session:
        await session.execute(update(PeerSupporter).where(PeerSupporter.id == paused).values(status="paused"))
    assert await run_safety_net(sessions, settings, end) == Run(len(holding[paused]), 0)
    assert await run_safety_net(sessions, settings, end) == Run(0, 0)
    assert set(_subjects(await _alerts(sessions), "cover-needed")) == holding[paused]
    async with transaction(sessions) as session:
        await session.execute(update(PeerSupporter).where(PeerSupporter.id == paused).values(status="active"))
    assert await run_safety_net(sessions, settings, end) == Run(0, len(holding[paused]))
    # Paused a second time: a new pause, its clients need cover again (each pause is its own occurrence).
    again = end + timedelta(days=1)
    async with transaction(sessions) as session:
        await session.execute(update(PeerSupporter).where(PeerSupporter.id == paused).values(status="paused"))
    assert await run_safety_net(sessions, settings, again) == Run(len(holding[paused]), 0)
    assert await run_safety_net(sessions, settings, again) == Run(0, 0)
    assert _subjects(await _alerts(sessions), "cover-needed") == Counter({e: 2 for e in holding[paused]})
    async with transaction(sessions) as session:
        await session.execute(update(PeerSupporter).where(PeerSupporter.id == paused).values(status="active"))
    assert await run_safety_net(sessions, settings, again) == Run(0, len(holding[paused]))

    await _outcomes_match_the_rows(sessions, client, auth, plan)


def _first_tick(at: datetime) -> datetime:
    return min(t for t in TICKS if t >= at)


async def _planted_alerts_open_and_close_on_time(sessions: SessionFactory, alerts: list[Alert], plan: Plan) -> None:
    """The weekly run opens each planted alert at the first run after its threshold passed and closes it at the first
    run after its condition ended (assignment on day 12, closure on day 35), not earlier, not later."""
    async with sessions() as session:
        discharged = dict((await session.execute(select(Episode.id, Episode.discharged_at))).all())
    day = timedelta(days=1)
    by_key = {(a.kind, a.subject): a for a in alerts}
    for episode_id in plan.never_assigned[:3]:
        left = _at(discharged[episode_id])
        alert = by_key["unassigned", episode_id]
        assert (alert.opened_at, alert.resolved_at) == (_first_tick(left + 3 * day), _first_tick(left + 12 * day))
    for episode_id in plan.never_contacted[:3]:
        left = _at(discharged[episode_id])
        alert = by_key["no-contact", episode_id]
        assert (alert.opened_at, alert.resolved_at) == (_first_tick(left + 7 * day), _first_tick(left + 35 * day))


# --- the outcomes, recomputed here from the rows -------------------------------------------------------------


async def _expected(sessions: SessionFactory) -> dict[str, dict[str, float | int | None]]:
    """Site ("all" too) -> figures, straight from the tables with this test's own reading of the definitions."""
    async with sessions() as session:
        episodes = (await session.execute(select(Episode, Client.site).join(Client))).all()
        contacts = (await session.execute(select(Contact).where(Contact.status == "finished"))).scalars().all()
        closures = {c.episode_id: c for c in (await session.execute(select(EpisodeClosure))).scalars()}
        stints = (await session.execute(select(Assignment))).scalars().all()
    by_episode: dict[str, list[Contact]] = {}
    for c in contacts:
        by_episode.setdefault(c.episode_id, []).append(c)
    next_stay = {e.previous_episode_id: _at(e.admitted_at) for e, _ in episodes if e.previous_episode_id}
    site_of = {e.id: site for e, site in episodes}
    out: dict[str, dict[str, float | int | None]] = {}
    for site in (*SITES, "all"):
        mine = [e for e, s in episodes if site in ("all", s)]
        discharged = {
            e.id: e.discharged_at for e in mine if e.discharged_at and PERIOD_START <= e.discharged_at < PERIOD_END
        }
        days = []
        for episode_id, left in discharged.items():
            after = [c.started_at for c in by_episode.get(episode_id, []) if c.started_at >= left]
            if after:
                days.append((min(after) - left).total_seconds() / 86400)
        readmitted_30, readmitted_90 = (
            sum(1 for i, left in discharged.items() if i in next_stay and next_stay[i] - left <= timedelta(days=n))
            for n in (30, 90)
        )
        weeks = meeting = contacted_in_weeks = minutes_in_weeks = 0
        for e in mine:
            if e.discharged_at is None:
                continue
            stops = [PERIOD_END] + [t for t in (next_stay.get(e.id),) if t]
            if e.id in closures:
                stops.append(closures[e.id].ended_at)
            start = e.discharged_at
            while start + WEEK <= min(stops):
                if start >= PERIOD_START:
                    weeks += 1
                    in_week = [c for c in by_episode.get(e.id, []) if start <= c.started_at < start + WEEK]
                    minutes = sum(c.minutes for c in in_week)
                    meeting += int(minutes >= 60)
                    contacted_in_weeks += len(in_week)
                    minutes_in_weeks += minutes
                start += WEEK
        drop_outs = sum(
            1
            for c in closures.values()
            if c.reason in ("client-withdrew", "no-contact")
            and PERIOD_START <= c.ended_at < PERIOD_END
            and site in ("all", site_of[c.episode_id])
        )
        rematches = sum(
            1
            for a in stints
            if a.end_kind == "rematch"
            and a.ended_at is not None
            and PERIOD_START <= a.ended_at < PERIOD_END
            and site in ("all", site_of[a.episode_id])
        )
        out[site] = {
            "discharged": len(discharged),
            "contacted": len(days),
            "median_days": round(statistics.median(days), 2),
            "readmitted_30": readmitted_30,
            "readmitted_90": readmitted_90,
            "contacts": contacted_in_weeks,
            "minutes": minutes_in_weeks,
            "weeks": weeks,
            "meeting": meeting,
            "drop_outs": drop_outs,
            "rematches": rematches,
        }
    return out


def _counts(group: dict[str, object]) -> dict[str, int]:
    populations = group["population"]
    assert isinstance(populations, list)
    return {p["code"]["coding"][0]["code"]: p["count"] for p in populations if "count" in p}


async def _report(
    client: httpx.AsyncClient, auth: Auth, measure: str, role: Role = Role.ADMINISTRATOR, **kw: str
) -> dict:  # type: ignore[type-arg]
    response = await client.get(f"/fhir/Measure/{measure}/$evaluate-measure", params=PERIOD, headers=auth(role, **kw))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/fhir+json")
    report: dict = response.json()  # type: ignore[type-arg]
    MeasureReport.model_validate(report)
    assert report["resourceType"] == "MeasureReport"
    assert report["type"] == "summary"
    assert report["status"] == "complete"
    return report


async def _outcomes_match_the_rows(sessions: SessionFactory, client: httpx.AsyncClient, auth: Auth, plan: Plan) -> None:
    expected = await _expected(sessions)
    async with sessions() as session:
        audits_before = await session.scalar(select(func.count()).select_from(AuditRecord))

    started = time.perf_counter()
    report = await _report(client, auth, "discharged-into-program")
    print(f"\na year's MeasureReport: {time.perf_counter() - started:.2f} s")
    group = report["group"][0]
    assert _counts(group) == {"initial-population": expected["all"]["discharged"]}
    strata = {s["value"]["text"]: s for s in group["stratifier"][0]["stratum"]}
    assert {site: _counts(strata[site]) for site in SITES} == {
        site: {"initial-population": expected[site]["discharged"]} for site in SITES
    }
    # Every seeded peer belongs to the default organization and every client was matched: one stratum, all of them.
    [by_organization] = [s for s in group["stratifier"] if s["code"][0]["text"] == "organization"]
    assert [(s["value"]["text"], _counts(s)) for s in by_organization["stratum"]] == [
        ("default", {"initial-population": expected["all"]["discharged"]})
    ]

    first = (await _report(client, auth, "time-to-first-contact"))["group"][0]
    assert _counts(first) == {
        "initial-population": expected["all"]["discharged"],
        "measure-population": expected["all"]["contacted"],
        "measure-observation": expected["all"]["contacted"],  # one observation (days) per contacted client
    }
    assert first["measureScore"]["value"] == expected["all"]["median_days"]
    assert first["measureScore"]["code"] == "d"

    minimum = (await _report(client, auth, "client-weeks-meeting-minimum"))["group"][0]
    assert _counts(minimum) == {
        "initial-population": expected["all"]["weeks"],
        "denominator": expected["all"]["weeks"],
        "numerator": expected["all"]["meeting"],
    }
    readmissions = (await _report(client, auth, "readmission-30-day"))["group"][0]
    assert _counts(readmissions)["numerator"] == expected["all"]["readmitted_30"]
    assert _counts(readmissions)["denominator"] == expected["all"]["discharged"]  # all followed up by now
    ninety = (await _report(client, auth, "readmission-90-day"))["group"][0]
    assert _counts(ninety) == {
        "initial-population": expected["all"]["discharged"],
        "denominator": expected["all"]["discharged"],
        "numerator": expected["all"]["readmitted_90"],
    }
    contacts = (await _report(client, auth, "contacts-per-client-week"))["group"][0]
    assert (_counts(contacts)["denominator"], _counts(contacts)["numerator"]) == (
        expected["all"]["weeks"],
        expected["all"]["contacts"],
    )
    minutes = (await _report(client, auth, "minutes-per-client-week"))["group"][0]
    assert _counts(minutes)["measure-observation"] == expected["all"]["weeks"]
    assert isinstance(expected["all"]["minutes"], int)
    assert minutes["measureScore"]["value"] == round(expected["all"]["minutes"] / expected["all"]["weeks"], 4)
    assert minutes["measureScore"]["code"] == "min"

    for measure, key in (("drop-outs", "drop_outs"), ("rematches", "rematches")):
        group = (await _report(client, auth, measure))["group"][0]
        assert _counts(group) == {"initial-population": expected["all"][key]}
        shown = 0
        withheld = []
        for stratum in group["stratifier"][0]["stratum"]:
            n = expected.get(stratum["value"]["text"], {}).get(key, 0)  # the empty "default" site too
            assert isinstance(n, int)
            if "count" in stratum["population"][0]:
                assert stratum["population"][0]["count"] == n
                assert not 0 < n < 5  # a small cell is never shown
                shown += n
            else:  # withheld, and said to be masked
                assert stratum["population"][0]["extension"][0]["valueCode"] == "masked"
                withheld.append(n)
        # The total minus the strata shown never gives back one small cell on its own.
        assert len([n for n in withheld if n]) != 1
        total = expected["all"][key]
        assert isinstance(total, int)
        assert total - shown == sum(withheld)
    assert all(0 < int(expected[site]["rematches"] or 0) < 5 for site in SITES)  # the test met small cells

    # A coordinator whose own site counts few: their total is withheld too (it is the small cell itself).
    few = (await _report(client, auth, "rematches", Role.COORDINATOR, site="north"))["group"][0]
    assert "count" not in few["population"][0]
    assert few["population"][0]["extension"][0]["valueCode"] == "masked"

    # A site's coordinator: their own site only, the same figures as that stratum.
    north = await _report(client, auth, "discharged-into-program", Role.COORDINATOR, site="north")
    assert [s["value"]["text"] for s in north["group"][0]["stratifier"][0]["stratum"]] == ["north"]
    assert _counts(north["group"][0]) == {"initial-population": expected["north"]["discharged"]}

    params = PERIOD
    table = await client.get("/api/outcomes.csv", params=params, headers=auth(Role.ADMINISTRATOR))
    assert table.status_code == 200
    assert table.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(table.text)))
    assert ["discharged-into-program", "all", "initial-population", str(expected["all"]["discharged"])] in rows
    assert ["rematches", "site=north", "initial-population", "suppressed"] in rows
    async with sessions() as session:
        identifiers = [i for row in (await session.execute(select(Episode.id, Episode.client_id))).all() for i in row]
    for text in (table.text, json.dumps(report), json.dumps(first)):
        assert not any(identifier in text for identifier in identifiers)  # no episode, no client named

    for name, magic in (
        ("time-to-first-contact.svg", b"<?xml"),
        ("readmissions.png", b"\x89PNG"),
        ("contact-minutes.svg", b"<?xml"),
    ):
        chart = await client.get(f"/api/outcomes/charts/{name}", params=params, headers=auth(Role.ADMINISTRATOR))
        assert chart.status_code == 200, chart.text
        assert chart.content.startswith(magic)
    async with sessions() as session:
        audits_after = await session.scalar(
            select(func.count()).select_from(AuditRecord).where(AuditRecord.client_id == "")
        )
    assert audits_after is not None
    assert audits_before is not None
    assert audits_after - audits_before == 15  # every report, table and chart generated was audited
    async with sessions() as session:
        audits = (await session.execute(select(AuditRecord).where(AuditRecord.client_id == ""))).scalars().all()
    for audit in audits:
        event = AuditEvent.model_validate_json(audit.resource_json)
        assert audit.actor.startswith(("administrator/", "coordinator/"))  # who asked
        asked = event.agent[0].who
        assert asked is not None
        assert asked.reference is None  # "administrator/x" is no FHIR reference: named by identifier instead
        assert asked.identifier is not None
        assert f"{asked.display}/{asked.identifier.value}" == audit.actor
        assert event.entity is not None
        assert all(str(e.what.reference).startswith("Measure/") for e in event.entity if e.what is not None)
