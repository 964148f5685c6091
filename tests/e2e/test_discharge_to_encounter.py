"""The whole path once: Da Vinci admit and discharge in, consent and assignment, the peer's summary, the
peer's contact out to a real FHIR server (Medplum's, validating every write) exactly once."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.encounter import Encounter
from sqlalchemy import select, update

import fhir_profiles
from service.auth import Role
from service.ehr.client import EhrClient
from service.main import create_app
from service.settings import Settings
from service.store.db import create_engine, session_factory
from service.store.jobs import Job
from service.workers.outbox import DeliveryReport, deliver_due
from tests.conftest import fixture_json
from tests.support.consents import peer_consent
from tests.support.ehr import TestEhr
from tests.support.flow import ADMIT, DISCHARGE, assign, client_with_contact, discharge, peer_contact, register_peer

pytestmark = pytest.mark.ehr
Auth = Callable[..., dict[str, str]]


async def deliver(settings: Settings, ehr: TestEhr, **overrides: Any) -> DeliveryReport:
    """One run of the outbox worker against the test EHR."""
    worker_settings = settings.model_copy(update={"ehr_base_url": ehr.base_url, **overrides})
    engine = create_engine(settings.database_url)
    client = EhrClient(ehr.base_url)
    try:
        return await deliver_due(session_factory(engine), client, worker_settings)
    finally:
        await client.aclose()
        await engine.dispose()


def seed_ehr_with_the_stay(ehr: TestEhr) -> tuple[str, str]:
    """The EHR already holds the Patient and the hospital stay the notifications are about."""
    bundle = fixture_json(DISCHARGE)
    patient = bundle["entry"][2]["resource"]
    encounter = dict(bundle["entry"][1]["resource"])
    encounter["subject"] = {"reference": f"Patient/{patient['id']}"}
    for key in ("location", "participant", "serviceProvider"):
        encounter.pop(key)
    with httpx.Client(base_url=ehr.base_url + "/") as http:
        for resource in (patient, encounter):
            response = http.put(f"{resource['resourceType']}/{resource['id']}", json=resource)
            assert response.status_code in (200, 201), response.text
    return patient["id"], encounter["id"]


async def test_discharge_to_summary_to_encounter_at_the_ehr_once(
    client: httpx.AsyncClient, auth: Auth, settings: Settings, ehr: TestEhr
) -> None:
    patient_id, stay_id = seed_ehr_with_the_stay(ehr)

    # The hospital tells Peerway: admitted, then discharged.
    await discharge(client, auth, ADMIT)
    episode = await discharge(client, auth, DISCHARGE)
    assert episode["state"] == "in-community"

    # The coordinator registers a peer, assigns them and records what the client agreed to share.
    peer = await register_peer(client, auth, "Alex Morgan")
    await assign(client, auth, episode["id"], peer["id"])
    consent = peer_consent(episode["patient"], ["preferred-name", "admission-discharge"], actor=peer["practitioner"])
    recorded = await client.post("/fhir/Consent", json=consent, headers=auth(Role.COORDINATOR, "coord"))
    assert recorded.status_code == 201, recorded.text

    # The peer's app pulls the summary: the name and the discharge, nothing else.
    summary = await client.get(
        f"/fhir/Patient/{episode['client_id']}/$peer-summary", headers=auth(Role.PEER, peer["id"])
    )
    assert summary.status_code == 200
    Bundle.model_validate(summary.json())
    resources = {e["resource"]["resourceType"]: e["resource"] for e in summary.json()["entry"]}
    assert set(resources) == {"Patient", "Encounter"}
    assert resources["Patient"]["name"][0]["family"] == "Halvorson124"
    assert "telecom" not in resources["Patient"]
    assert "address" not in resources["Patient"]
    assert resources["Encounter"]["period"]["end"] == "2018-10-23T22:22:15-07:00"

    # The peer records a contact; the worker writes it to the EHR.
    posted = await client.post(
        "/fhir/Encounter", json=peer_contact(episode["client_id"]), headers=auth(Role.PEER, peer["id"])
    )
    assert posted.status_code == 201, posted.text
    report = await deliver(settings, ehr)
    assert (report.delivered, report.dead) == (2, 0)  # the contact, and the CareTeam the assignment queued

    found = ehr.search("Encounter", identifier=f"{fhir_profiles.CONTACT_IDENTIFIER_SYSTEM}|{posted.json()['id']}")
    assert len(found) == 1
    written = found[0]
    Encounter.model_validate(written)
    assert fhir_profiles.check_conformance(written, fhir_profiles.PEER_CONTACT_PROFILE) == []
    assert written["subject"]["reference"] == f"Patient/{patient_id}"
    assert written["status"] == "finished"
    assert written["class"]["code"] == "FLD"
    assert written["length"]["value"] == 60
    # A contact in the community is linked to the stay it follows from: the EHR finds it from the stay.
    assert written["partOf"] == {"reference": f"Encounter/{stay_id}"}
    from_the_stay = ehr.search("Encounter", **{"part-of": f"Encounter/{stay_id}"})
    assert [e["id"] for e in from_the_stay] == [written["id"]]
    practitioner = ehr.read("Practitioner", written["participant"][0]["individual"]["reference"].split("/")[1])
    assert practitioner is not None
    assert practitioner["name"][0]["text"] == "Alex Morgan"
    assert ehr.count("Encounter") == 2  # the hospital stay and the peer contact
    [careteam] = ehr.search("CareTeam", subject=f"Patient/{patient_id}")
    assert careteam["participant"][0]["member"]["reference"] == written["participant"][0]["individual"]["reference"]

    # A second delivery run adds nothing.
    writes_before = len(ehr.requests())
    again = await deliver(settings, ehr)
    assert again == DeliveryReport()
    assert len(ehr.requests()) == writes_before
    assert ehr.count("Encounter") == 2
    assert stay_id != written["id"]


async def test_conditional_create_mode_also_writes_once(
    client: httpx.AsyncClient, auth: Auth, settings: Settings, ehr: TestEhr
) -> None:
    _, _, contact = await client_with_contact(client, auth)
    assert (await deliver(settings, ehr, ehr_write_mode="conditional-create")).delivered == 2  # + the CareTeam
    # As if the worker crashed after the EHR answered but before our commit: the row is due again.
    await make_all_rows_due_again(settings.database_url)
    assert (await deliver(settings, ehr, ehr_write_mode="conditional-create")).delivered == 2
    found = ehr.search("Encounter", identifier=f"{fhir_profiles.CONTACT_IDENTIFIER_SYSTEM}|{contact['id']}")
    assert len(found) == 1


async def make_all_rows_due_again(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        async with session_factory(engine).begin() as session:
            await session.execute(update(Job).values(status="pending", claimed_until=None))
    finally:
        await engine.dispose()


async def test_put_mode_redelivery_after_a_crash_changes_nothing(
    client: httpx.AsyncClient, auth: Auth, settings: Settings, ehr: TestEhr
) -> None:
    await client_with_contact(client, auth)
    assert (await deliver(settings, ehr)).delivered == 2  # the contact and the CareTeam
    await make_all_rows_due_again(settings.database_url)
    assert (await deliver(settings, ehr)).delivered == 2
    assert ehr.count("Encounter") == 1
    assert ehr.count("CareTeam") == 1


async def test_an_ehr_outage_is_retried_and_delivers_once(
    client: httpx.AsyncClient, auth: Auth, settings: Settings, ehr: TestEhr
) -> None:
    await client_with_contact(client, auth)

    ehr.fault(status=503, count=2, retryAfter=0)  # both rows: the CareTeam, then the contact
    first = await deliver(settings, ehr)
    assert (first.delivered, first.retrying) == (0, 2)
    second = await deliver(settings, ehr)
    assert second.delivered == 2
    assert ehr.count("Encounter") == 1


async def test_an_ehr_refusal_is_a_dead_letter_with_the_ehrs_outcome(
    client: httpx.AsyncClient, auth: Auth, settings: Settings, ehr: TestEhr, database_url: str
) -> None:
    await client_with_contact(client, auth)

    ehr.fault(status=422, count=2)  # both rows: the CareTeam, then the contact
    report = await deliver(settings, ehr)
    assert report.dead == 2
    assert ehr.count("Encounter") == 0
    engine = create_engine(database_url)
    try:
        async with session_factory(engine)() as session:
            [row] = (await session.execute(select(Job).where(Job.kind == "contact"))).scalars().all()
        assert row.status == "dead"
        assert row.last_error is not None
        assert "OperationOutcome" in row.last_error
        json.loads(row.last_error.split("\n", 1)[1])
    finally:
        await engine.dispose()


async def test_the_services_own_worker_delivers_without_being_asked(
    auth: Auth, settings: Settings, ehr: TestEhr
) -> None:
    """`make run` starts the worker in the service's lifespan; a contact reaches the EHR on its own."""
    running = settings.model_copy(
        update={"ehr_base_url": ehr.base_url, "run_worker": True, "outbox_poll_seconds": 0.05}
    )
    app = create_app(running)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://peerway.test") as client,
    ):
        _, _, contact = await client_with_contact(client, auth)
        identifier = f"{fhir_profiles.CONTACT_IDENTIFIER_SYSTEM}|{contact['id']}"
        for _ in range(400):  # wait for the condition (bounded), not for a fixed time
            if ehr.search("Encounter", identifier=identifier):
                break
            await asyncio.sleep(0.025)
        assert len(ehr.search("Encounter", identifier=identifier)) == 1
