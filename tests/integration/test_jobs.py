"""One job framework, against the test EHR: one worker writes contacts to the EHR and reads the EHR for id-only
events; a read the EHR refuses is a dead letter that coordinators and operators see, replay and discard like a
refused write; the metrics count it by kind; and the service's own worker reads an id-only event as soon as the
notification that queued it is answered."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy import select

import fhir_profiles
from service.auth import Role
from service.ehr.client import EhrClient
from service.main import create_app
from service.settings import Settings
from service.store.claims import claim
from service.store.db import create_engine, session_factory
from service.store.jobs import Job
from service.workers import worker
from service.workers.command import dead_letters
from service.workers.intake import process_inbox
from tests.api.test_subscriptions import channels, episodes, event_notification, notify, stay
from tests.integration.test_intake_ehr import hospital_stay
from tests.support.ehr import TestEhr
from tests.support.flow import client_with_contact

pytestmark = pytest.mark.ehr
Auth = Callable[..., dict[str, str]]
START = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
SCRAPE_TOKEN = "scrape-token-0123456789"


@pytest.fixture
def settings(settings: Settings, ehr: TestEhr) -> Settings:
    return settings.model_copy(
        update={
            "ehr_base_url": ehr.base_url,
            "metrics_token": SecretStr(SCRAPE_TOKEN),
            "outbox_poll_seconds": 0.05,
            "outbox_max_backoff_seconds": 1.0,
        }
    )


async def until(condition: Callable[[], Awaitable[bool]], *, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not await condition():
        assert time.monotonic() < deadline, f"waited {within:.0f} s for {what}"
        await asyncio.sleep(0.05)


def id_only(number: int, encounter_id: str) -> dict[str, Any]:
    return event_notification(number, stay(encounter_id, patient_id=f"patient-{encounter_id}"), payload="id-only")


async def test_one_worker_writes_contacts_and_reads_id_only_events(
    client: httpx.AsyncClient, auth: Auth, settings: Settings, ehr: TestEhr
) -> None:
    """What `peerway worker` runs: every kind of job, not only the deliveries."""
    _, _, contact = await client_with_contact(client, auth)
    hospital_stay(ehr, "stay-9", "patient-stay-9", "in-progress", START)
    assert (await notify(client, auth, id_only(1, "stay-9"))).status_code == 200
    identifier = f"{fhir_profiles.CONTACT_IDENTIFIER_SYSTEM}|{contact['id']}"

    async def both_done() -> bool:
        read = len(await episodes(client, auth)) == 2
        return read and len(ehr.search("Encounter", identifier=identifier)) == 1

    engine = create_engine(settings.database_url)
    reader = EhrClient(settings.ehr_base_url)
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(session_factory(engine), reader, settings, stop))
    try:
        await until(both_done, within=30, what="the contact written and the id-only event read")
    finally:
        stop.set()
        await asyncio.wait_for(running, timeout=30)
        await reader.aclose()
        await engine.dispose()
    [channel] = await channels(client, auth)
    assert (channel["health"], channel["pending_work"], channel["failed_work"]) == ("ok", 0, 0)
    assert ehr.count("CareTeam") == 1


async def test_a_read_the_ehr_refuses_is_a_dead_letter_replayed_or_discarded_like_a_write(
    client: httpx.AsyncClient,
    auth: Auth,
    app: FastAPI,
    settings: Settings,
    ehr: TestEhr,
    capsys: pytest.CaptureFixture[str],
) -> None:
    coordinator = auth(Role.COORDINATOR, "coord")
    for number, encounter in ((1, "stay-late"), (2, "stay-never")):  # the EHR has neither (yet)
        assert (await notify(client, auth, id_only(number, encounter))).status_code == 200
    reader = EhrClient(settings.ehr_base_url)
    try:
        report = await process_inbox(app.state.sessions, reader, settings)
        assert (report.claimed, report.done, report.dead) == (2, 0, 2)

        dead = (await client.get("/api/outbox/dead", headers=coordinator)).json()
        assert [(d["kind"], d["subject_id"], d["http_status"], d["attempts"]) for d in dead] == [
            ("fetch", "Encounter/stay-late", 404, 1),
            ("fetch", "Encounter/stay-never", 404, 1),
        ]
        assert dead[0]["error"] == "the EHR has no Encounter/stay-late"
        assert (await asyncio.to_thread(dead_letters, settings, "list", None)) == 0
        listed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert [(d["id"], d["kind"], d["site"]) for d in listed] == [(d["id"], "fetch", "default") for d in dead]
        [channel] = await channels(client, auth)
        assert (channel["pending_work"], channel["failed_work"]) == (0, 2)

        # The stay reaches the EHR: the coordinator replays that one and gives up on the other.
        hospital_stay(ehr, "stay-late", "patient-stay-late", "in-progress", START)
        replayed = await client.post(f"/api/outbox/{dead[0]['id']}/replay", headers=coordinator)
        assert replayed.status_code == 200, replayed.text
        assert (await client.delete(f"/api/outbox/{dead[1]['id']}", headers=coordinator)).status_code == 204
        report = await process_inbox(app.state.sessions, reader, settings)
        assert (report.claimed, report.done) == (1, 1)
    finally:
        await reader.aclose()
    [episode] = await episodes(client, auth)
    assert episode["state"] == "on-ward"
    [channel] = await channels(client, auth)
    assert (channel["pending_work"], channel["failed_work"]) == (0, 0)  # a discarded job is no failure
    assert (await client.get("/api/outbox/dead", headers=coordinator)).json() == []

    scraped = await client.get("/metrics", headers={"Authorization": f"Bearer {SCRAPE_TOKEN}"})
    figures = dict(line.rsplit(" ", 1) for line in scraped.text.splitlines() if line and not line.startswith("#"))
    assert float(figures['peerway_outbox_rows{kind="fetch",site="default",status="done"}']) == 1
    assert float(figures['peerway_outbox_rows{kind="fetch",site="default",status="discarded"}']) == 1
    assert float(figures['peerway_outbox_attempts{kind="fetch",site="default",status="done"}']) == 2


async def test_the_services_own_worker_reads_an_id_only_event_once_it_is_queued(
    auth: Auth, settings: Settings, ehr: TestEhr
) -> None:
    """With PEERWAY_RUN_WORKER the API process runs the worker, woken by the notification (its poll is far off)."""
    running = settings.model_copy(update={"run_worker": True, "outbox_poll_seconds": 600.0})
    hospital_stay(ehr, "stay-1", "patient-stay-1", "in-progress", START)
    app = create_app(running)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://peerway.test") as client,
    ):
        assert (await notify(client, auth, id_only(1, "stay-1"))).status_code == 200

        async def read() -> bool:
            return len(await episodes(client, auth)) == 1

        await until(read, within=30, what="the id-only event read by the service's own worker")


async def test_empty_notifications_share_one_waiting_search_and_a_running_one_gets_a_follower(
    client: httpx.AsyncClient, auth: Auth, app: FastAPI, settings: Settings
) -> None:
    margin = timedelta(seconds=settings.subscription_search_margin_seconds)
    first, earlier, earliest = START + timedelta(hours=2), START + timedelta(hours=1), START

    def empty(number: int, at: datetime) -> dict[str, Any]:
        return event_notification(number, stay(f"stay-{number}"), payload="empty", at=at)

    async def searches() -> list[tuple[str, datetime | None, bool]]:
        async with app.state.sessions() as session:
            found = await session.execute(select(Job).where(Job.kind == "search").order_by(Job.id))
            return [(row.status, row.since, row.claimed_by is not None) for row in found.scalars()]

    for number, at in ((1, first), (2, earlier)):
        assert (await notify(client, auth, empty(number, at))).status_code == 200
    assert await searches() == [("pending", earlier - margin, False)]  # one search, from the earlier event

    # A worker takes it; a notification now needs a search of its own, which waits until the first is done.
    now = datetime.now(UTC)
    lease = now + timedelta(minutes=1)
    async with app.state.sessions.begin() as session:
        assert len(await claim(session, "worker-1", now, lease, 10, {"search"}, skip_locked=False)) == 1
    assert (await notify(client, auth, empty(3, earliest))).status_code == 200
    assert await searches() == [("pending", earlier - margin, True), ("pending", earliest - margin, False)]
    async with app.state.sessions.begin() as session:
        assert await claim(session, "worker-2", now, lease, 10, {"search"}, skip_locked=False) == []
