"""Intake that needs the EHR, against the test EHR (Medplum's FHIR server): id-only notifications are fetched,
empty ones searched for, missed events recovered (a gap in event numbers, a silent channel), and Peerway's
own Subscription is created there and reported on."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy import update

from service.app.channels import check_channels
from service.auth import Role
from service.cli import main as cli_main
from service.ehr.client import EhrClient
from service.settings import Settings
from service.store.channel import SubscriptionChannel
from service.workers.intake import InboxReport, process_inbox
from tests.api.test_subscriptions import FORMS, channels, episodes, event_notification, instant, notify, stay
from tests.support.consents import peer_consent
from tests.support.ehr import TestEhr

pytestmark = pytest.mark.ehr
Auth = Callable[..., dict[str, str]]
V3 = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
EHR_TOKEN = "ehr-token-for-peerway"
SECRET = "channel-secret-0123456789-abcdef"


@pytest.fixture
def settings(settings: Settings, ehr: TestEhr) -> Settings:
    return settings.model_copy(
        update={
            "ehr_base_url": ehr.base_url,
            "ehr_bearer_token": SecretStr(EHR_TOKEN),
            "subscription_gap_grace_seconds": 0.0,
            "subscription_secret": SecretStr(SECRET),
        }
    )


def put(ehr: TestEhr, resource: dict[str, Any]) -> None:
    response = httpx.put(f"{ehr.base_url}/{resource['resourceType']}/{resource['id']}", json=resource)
    assert response.status_code in (200, 201), response.text


def hospital_stay(
    ehr: TestEhr, encounter_id: str, patient_id: str, status: str, start: datetime, end: datetime | None = None
) -> None:
    """The EHR holds the Patient and the Encounter (as they are now)."""
    put(ehr, {"resourceType": "Patient", "id": patient_id, "name": [{"family": "Okafor", "given": ["Ada"]}]})
    period = {"start": instant(start), **({"end": instant(end)} if end else {})}
    encounter = {
        "resourceType": "Encounter",
        "id": encounter_id,
        "status": status,
        "class": {"system": V3, "code": "IMP"},
        "subject": {"reference": f"Patient/{patient_id}"},
        "period": period,
    }
    put(ehr, encounter)


async def work(app: FastAPI, settings: Settings, rounds: int = 10) -> list[InboxReport]:
    """The intake worker, run until nothing is due (at most `rounds` times)."""
    token = settings.ehr_bearer_token.get_secret_value() if settings.ehr_bearer_token else None
    reader = EhrClient(settings.ehr_base_url, bearer_token=token)
    reports: list[InboxReport] = []
    try:
        for _ in range(rounds):
            reports.append(await process_inbox(app.state.sessions, reader, settings))
            if reports[-1].claimed == 0:
                break
    finally:
        await reader.aclose()
    return reports


def fetched(ehr: TestEhr) -> list[str]:
    return [f"{r['method']} {r['path'].split('?')[0]}" for r in ehr.requests() if r["method"] == "GET"]


START = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
END = datetime(2026, 11, 20, 15, 30, tzinfo=UTC)


@pytest.mark.parametrize("form", FORMS)
async def test_id_only_events_are_fetched_from_the_ehr_with_its_token(
    client: httpx.AsyncClient, auth: Auth, app: FastAPI, settings: Settings, ehr: TestEhr, form: str
) -> None:
    hospital_stay(ehr, "stay-1", "patient-1", "in-progress", START)
    admit = FORMS[form](event_notification(1, stay("stay-1", patient_id="patient-1"), payload="id-only"))
    response = await notify(client, auth, admit, headers={"X-Peerway-Channel": SECRET})
    assert response.status_code == 200, response.text
    assert "1 queued" in response.json()["issue"][0]["diagnostics"]
    assert await episodes(client, auth) == []  # acknowledged and queued: the EHR is read outside the request

    [first] = await work(app, settings, rounds=1)
    assert (first.done, first.dead) == (1, 0)
    [episode] = await episodes(client, auth)
    assert (episode["state"], episode["admitted_at"]) == ("on-ward", "2026-11-02T09:00:00Z")
    assert fetched(ehr) == ["GET /fhir/Encounter/stay-1", "GET /fhir/Patient/patient-1"]
    assert {r["authorization"] for r in ehr.requests() if r["method"] == "GET"} == {f"Bearer {EHR_TOKEN}"}

    hospital_stay(ehr, "stay-1", "patient-1", "finished", START, END)
    discharge = FORMS[form](event_notification(2, stay("stay-1", patient_id="patient-1"), payload="id-only"))
    assert (await notify(client, auth, discharge, headers={"X-Peerway-Channel": SECRET})).status_code == 200
    await work(app, settings)
    [moved] = await episodes(client, auth)
    assert (moved["id"], moved["state"], moved["discharged_at"]) == (episode["id"], "in-community", instant(END))
    [channel] = await channels(client, auth)
    assert (channel["health"], channel["pending_work"], channel["failed_work"]) == ("ok", 0, 0)


async def test_the_patients_snapshot_comes_from_the_ehr_when_the_notification_lacks_it(
    client: httpx.AsyncClient, auth: Auth, app: FastAPI, settings: Settings, ehr: TestEhr
) -> None:
    hospital_stay(ehr, "stay-1", "patient-1", "in-progress", START)
    assert (
        await notify(client, auth, event_notification(1, stay("stay-1", patient_id="patient-1")))
    ).status_code == 200
    await work(app, settings)
    [episode] = await episodes(client, auth)
    peer = (await client.post("/api/peers", json={"name": "Sam"}, headers=auth(Role.COORDINATOR, "c"))).json()
    assigned = await client.put(
        f"/api/episodes/{episode['id']}/peer", json={"peer_id": peer["id"]}, headers=auth(Role.COORDINATOR, "c")
    )
    assert assigned.status_code == 200, assigned.text
    consent = peer_consent(episode["patient"], ["preferred-name"], actor=peer["practitioner"])
    assert (await client.post("/fhir/Consent", json=consent, headers=auth(Role.COORDINATOR, "c"))).status_code == 201
    summary = await client.get(
        f"/fhir/Patient/{episode['client_id']}/$peer-summary", headers=auth(Role.PEER, peer["id"])
    )
    [patient] = [e["resource"] for e in summary.json()["entry"] if e["resource"]["resourceType"] == "Patient"]
    assert patient["name"][0]["family"] == "Okafor"


async def test_an_empty_notification_makes_peerway_search_for_what_changed(
    client: httpx.AsyncClient, auth: Auth, app: FastAPI, settings: Settings, ehr: TestEhr
) -> None:
    hospital_stay(ehr, "stay-1", "patient-1", "finished", START, END)
    hospital_stay(ehr, "stay-2", "patient-2", "in-progress", START)
    response = await notify(client, auth, event_notification(1, stay("stay-1"), payload="empty"))
    assert response.status_code == 200, response.text
    await work(app, settings)
    assert sorted(e["state"] for e in await episodes(client, auth)) == ["in-community", "on-ward"]
    [search] = [r["path"] for r in ehr.requests() if r["path"].startswith("/fhir/Encounter?")]
    assert "_lastUpdated=ge" in search


async def test_events_1_2_4_arrive_and_3_is_recovered_from_the_ehr(
    client: httpx.AsyncClient, auth: Auth, app: FastAPI, settings: Settings, ehr: TestEhr
) -> None:
    # What happened at the hospital: A admitted (1), B admitted (2), A discharged (3), C admitted (4).
    hospital_stay(ehr, "stay-a", "patient-a", "finished", START, END)
    hospital_stay(ehr, "stay-b", "patient-b", "in-progress", START)
    hospital_stay(ehr, "stay-c", "patient-c", "in-progress", START)
    sent = {
        1: stay("stay-a", "in-progress", patient_id="patient-a", start=START),
        2: stay("stay-b", "in-progress", patient_id="patient-b", start=START),
        4: stay("stay-c", "in-progress", patient_id="patient-c", start=START),
    }
    for number, encounter in sent.items():
        assert (await notify(client, auth, event_notification(number, encounter))).status_code == 200
    [channel] = await channels(client, auth)
    assert (channel["health"], channel["missing_events"], channel["contiguous_through"]) == ("gap", 1, 2)
    assert {e["state"] for e in await episodes(client, auth)} == {"on-ward"}  # A's discharge is the one lost

    await work(app, settings)
    assert sorted(e["state"] for e in await episodes(client, auth)) == ["in-community", "on-ward", "on-ward"]
    [channel] = await channels(client, auth)
    assert (channel["health"], channel["missing_events"], channel["contiguous_through"]) == ("ok", 0, 4)
    assert "by search" in channel["last_recovery_note"]
    paths = [r["path"] for r in ehr.requests()]
    assert "/fhir/Subscription/123/$status" in paths  # asked for the count first (the test EHR has no $status)
    assert "/fhir/metadata" in paths  # no $events in its CapabilityStatement: searched instead
    assert any(p.startswith("/fhir/Encounter?_lastUpdated=ge") for p in paths)


async def test_a_silent_channel_is_noticed_and_what_it_missed_is_recovered(
    client: httpx.AsyncClient, auth: Auth, app: FastAPI, settings: Settings, ehr: TestEhr
) -> None:
    hospital_stay(ehr, "stay-a", "patient-a", "in-progress", START)
    assert (
        await notify(client, auth, event_notification(1, stay("stay-a", patient_id="patient-a")))
    ).status_code == 200
    hospital_stay(ehr, "stay-a", "patient-a", "finished", START, END)  # ...and the channel died before telling us
    async with app.state.sessions.begin() as session:
        an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
        await session.execute(update(SubscriptionChannel).values(last_seen_at=an_hour_ago))
    [channel] = await channels(client, auth)
    assert channel["health"] == "silent"

    assert len(await check_channels(app.state.sessions, settings)) == 1
    await work(app, settings)
    [episode] = await episodes(client, auth)
    assert episode["state"] == "in-community"
    [channel] = await channels(client, auth)
    assert channel["health"] == "silent"  # still no heartbeat: operators keep seeing it
    assert channel["last_recovery_note"] == "checked by search: nothing missed"
    assert len(await check_channels(app.state.sessions, settings)) == 1  # recovered a moment ago: not again yet
    assert (await work(app, settings))[0].claimed == 0

    heartbeat = event_notification(1)
    assert (await notify(client, auth, FORMS["r4b"](_heartbeat(heartbeat)))).status_code == 200
    [channel] = await channels(client, auth)
    assert channel["health"] == "ok"


def _heartbeat(bundle: dict[str, Any]) -> dict[str, Any]:
    parameters = bundle["entry"][0]["resource"]["parameter"]
    bundle["entry"][0]["resource"]["parameter"] = [
        {**p, "valueCode": "heartbeat"} if p["name"] == "type" else p
        for p in parameters
        if p["name"] != "notification-event"
    ]
    bundle["entry"] = bundle["entry"][:1]
    return bundle


async def test_an_encounter_the_ehr_does_not_have_is_a_dead_letter_operators_see(
    client: httpx.AsyncClient, auth: Auth, app: FastAPI, settings: Settings, ehr: TestEhr
) -> None:
    assert (await notify(client, auth, event_notification(1, stay("gone"), payload="id-only"))).status_code == 200
    [report] = await work(app, settings, rounds=1)
    assert (report.done, report.dead) == (0, 1)
    [channel] = await channels(client, auth)
    assert (channel["pending_work"], channel["failed_work"]) == (0, 1)


async def test_an_unreachable_ehr_is_retried_later_and_nothing_is_lost(
    client: httpx.AsyncClient, auth: Auth, app: FastAPI, settings: Settings, ehr: TestEhr
) -> None:
    hospital_stay(ehr, "stay-1", "patient-1", "finished", START, END)
    assert (await notify(client, auth, event_notification(1, stay("stay-1"), payload="id-only"))).status_code == 200
    ehr.fault(status=503, count=1, retryAfter=0)
    [first] = await work(app, settings, rounds=1)
    assert (first.done, first.retrying) == (0, 1)
    assert await episodes(client, auth) == []
    await work(app, settings)
    [episode] = await episodes(client, auth)
    assert episode["state"] == "in-community"


def test_the_subscription_command_creates_peerways_subscription_on_the_ehr(
    database_url: str, ehr: TestEhr, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in {
        "PEERWAY_DATABASE_URL": database_url,
        "PEERWAY_EHR_BASE_URL": ehr.base_url,
        "PEERWAY_PUBLIC_BASE_URL": "https://peerway.example.org",
        "PEERWAY_SUBSCRIPTION_SECRET": SECRET,
        "PEERWAY_SUBSCRIPTION_PAYLOAD": "full-resource",
    }.items():
        monkeypatch.setenv(name, value)
    assert cli_main(["subscription", "create", "--heartbeat", "120"]) == 0
    assert "Subscription/peerway-encounters" in capsys.readouterr().out

    stored = ehr.read("Subscription", "peerway-encounters")
    assert stored is not None
    assert stored["status"] == "requested"
    assert stored["criteria"] == "http://hl7.org/fhir/uv/subscriptions-backport/SubscriptionTopic/r4-encounter-complete"
    channel = stored["channel"]
    assert channel["type"] == "rest-hook"
    assert channel["endpoint"] == "https://peerway.example.org/fhir/subscription-notification"
    assert channel["header"] == [f"X-Peerway-Channel: {SECRET}"]
    assert channel["_payload"]["extension"][0]["valueCode"] == "full-resource"
    assert {"url": f"{_BACKPORT}/backport-heartbeat-period", "valueUnsignedInt": 120} in channel["extension"]

    assert cli_main(["subscription", "create", "--heartbeat", "120"]) == 0  # again: the same one, updated
    assert ehr.count("Subscription") == 1

    assert cli_main(["subscription", "status"]) == 0
    out = capsys.readouterr().out
    assert "Subscription/peerway-encounters (read): status requested" in out
    assert "heartbeat 120 s" in out
    assert "channel waiting: last seen never" in out


_BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition"
