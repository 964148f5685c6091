"""Coordinators see what the EHR refused and why, replay it once the cause is fixed or discard it; operators
scrape the queue's figures (counts only) with the scrape token."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from pydantic import SecretStr

import fhir_profiles
from service.auth import Role
from service.settings import Settings
from service.workers.outbox import DeliveryReport
from tests.support.delivery import deliver, outbox
from tests.support.ehr import TestEhr
from tests.support.flow import client_with_contact

pytestmark = pytest.mark.ehr
Auth = Callable[..., dict[str, str]]
SCRAPE_TOKEN = "scrape-token-0123456789"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"metrics_token": SecretStr(SCRAPE_TOKEN)})


async def test_a_refusal_is_listed_with_the_ehrs_outcome_then_replayed_once(
    client: httpx.AsyncClient, auth: Auth, settings: Settings, ehr: TestEhr
) -> None:
    _, _, contact = await client_with_contact(client, auth)
    coordinator = auth(Role.COORDINATOR, "coord")
    ehr.fault(status=422, count=2)
    assert (await deliver(settings, ehr)).dead == 2

    listed = await client.get("/api/outbox/dead", headers=coordinator)
    assert listed.status_code == 200
    letters = {letter["kind"]: letter for letter in listed.json()}
    assert set(letters) == {"careteam", "contact"}
    letter = letters["contact"]
    assert letter["subject_id"] == contact["id"]
    assert letter["http_status"] == 422
    assert letter["attempts"] == 1
    assert letter["outcome"]["resourceType"] == "OperationOutcome"
    assert letter["outcome"]["issue"][0]["details"]["text"] == "Injected fault: HTTP 422"

    # The cause is fixed at the EHR (the fault is spent); the coordinator replays both.
    for item in letters.values():
        replayed = await client.post(f"/api/outbox/{item['id']}/replay", headers=coordinator)
        assert replayed.status_code == 200, replayed.text
    assert (await deliver(settings, ehr)).delivered == 2
    assert len(ehr.search("Encounter", identifier=f"{fhir_profiles.CONTACT_IDENTIFIER_SYSTEM}|{contact['id']}")) == 1
    assert (await client.get("/api/outbox/dead", headers=coordinator)).json() == []
    again = await client.post(f"/api/outbox/{letter['id']}/replay", headers=coordinator)
    assert again.status_code == 409  # delivered: nothing to replay
    assert (await client.post("/api/outbox/999999/replay", headers=coordinator)).status_code == 404


async def test_a_discarded_dead_letter_is_never_delivered(
    client: httpx.AsyncClient, auth: Auth, settings: Settings, ehr: TestEhr
) -> None:
    await client_with_contact(client, auth)
    coordinator = auth(Role.COORDINATOR, "coord")
    ehr.fault(status=400, count=2)
    await deliver(settings, ehr)
    dead = (await client.get("/api/outbox/dead", headers=coordinator)).json()

    for letter in dead:
        assert (await client.delete(f"/api/outbox/{letter['id']}", headers=coordinator)).status_code == 204

    assert await deliver(settings, ehr) == DeliveryReport()  # nothing due
    assert ehr.count("Encounter") == 0
    assert {row.status for row in await outbox(settings.database_url)} == {"discarded"}
    assert (await client.get("/api/outbox/dead", headers=coordinator)).json() == []


async def test_only_coordinators_handle_dead_letters(client: httpx.AsyncClient, auth: Auth) -> None:
    for role in (Role.PEER, Role.EHR_SYSTEM):
        assert (await client.get("/api/outbox/dead", headers=auth(role, "x"))).status_code == 403
        assert (await client.post("/api/outbox/1/replay", headers=auth(role, "x"))).status_code == 403
        assert (await client.delete("/api/outbox/1", headers=auth(role, "x"))).status_code == 403


async def test_the_metrics_show_depth_age_and_attempts_and_nothing_about_anyone(
    client: httpx.AsyncClient, auth: Auth, settings: Settings, ehr: TestEhr
) -> None:
    episode, peer, contact = await client_with_contact(client, auth)
    ehr.fault(status=503, count=1, retryAfter=60)  # one row waits a minute; the other is delivered
    await deliver(settings, ehr)

    assert (await client.get("/metrics")).status_code == 401
    assert (await client.get("/metrics", headers={"Authorization": "Bearer wrong"})).status_code == 401
    response = await client.get("/metrics", headers={"Authorization": f"Bearer {SCRAPE_TOKEN}"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    figures = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in response.text.splitlines()
        if line and not line.startswith("#")
    }
    assert figures["peerway_outbox_depth"] == 1
    pending = {k for k, v in figures.items() if k.startswith("peerway_outbox_rows") and 'status="pending"' in k and v}
    done = {k for k, v in figures.items() if k.startswith("peerway_outbox_rows") and 'status="done"' in k and v}
    assert len(pending) == len(done) == 1
    assert figures["peerway_outbox_retrying"] == 1
    assert figures[pending.pop().replace("_rows", "_attempts")] == 1
    assert figures["peerway_outbox_max_pending_attempts"] == 1
    assert figures["peerway_outbox_oldest_pending_age_seconds"] >= 0
    for identifying in (episode["id"], episode["client_id"], peer["id"], peer["name"], contact["id"]):
        assert identifying not in response.text
