"""The peer's summary filled from the hospital EHR (the seeded client in tests/ehr/seed): what the client agreed to
share, item by item, and no more; read by the worker after the discharge and the consent, never by a request;
an EHR outage leaves Peerway answering with what it has, marked stale."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fhir.resources.R4B.auditevent import AuditEvent
from fhir.resources.R4B.bundle import Bundle
from sqlalchemy import update

import fhir_profiles
from consent import DataCategory
from fhir_profiles.conformance import check_conformance
from service.app.background import BACKGROUND, REFRESH_AFTER, fetch_background, queue_refreshes, review_consents
from service.auth import Role
from service.ehr.client import EhrClient
from service.settings import Settings
from service.store import background as background_store
from service.store.db import transaction
from service.store.jobs import Job, new_job
from service.workers.background import read_backgrounds
from tests.support.consents import peer_consent
from tests.support.ehr import TestEhr
from tests.support.flow import ADMIT, assign, discharge, discharged_client_with_peer, register_peer
from tests.support.seed import PATIENT_ID, seed_discharged_client

pytestmark = pytest.mark.ehr
Auth = Callable[..., dict[str, str]]
CATEGORY = fhir_profiles.DATA_CATEGORY_SYSTEM
EVERY_CATEGORY = [
    "preferred-name",
    "contact-details",
    "admission-discharge",
    "upcoming-appointments",
    "recovery-goals",
    "safety-considerations",
    "community-supports",
    "diagnosis",
    "clinical-notes",
]
SUD = {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "SUD"}


async def read_background(app: FastAPI, settings: Settings, ehr: TestEhr) -> None:
    """The worker's background jobs, until none is due."""
    reader = EhrClient(ehr.base_url)
    try:
        for _ in range(5):
            if (await read_backgrounds(app.state.sessions, reader, settings)).claimed == 0:
                return
    finally:
        await reader.aclose()


async def discharged_with_consent(
    client: httpx.AsyncClient, auth: Auth, categories: list[str]
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    episode = await discharge(client, auth)
    peer = await register_peer(client, auth)
    await assign(client, auth, episode["id"], peer["id"])
    consent = peer_consent(episode["patient"], categories, actor=peer["practitioner"])
    stored = await client.post("/fhir/Consent", json=consent, headers=auth(Role.COORDINATOR))
    assert stored.status_code == 201, stored.text
    return episode, peer, stored.json()


async def summary(client: httpx.AsyncClient, auth: Auth, episode: dict[str, Any], peer: dict[str, Any]) -> Any:
    response = await client.get(
        f"/fhir/Patient/{episode['client_id']}/$peer-summary", headers=auth(Role.PEER, peer["id"])
    )
    assert response.status_code == 200, response.text
    Bundle.model_validate(response.json())
    conforms(response.json())
    return response.json()


PROFILES = {
    "Patient": "patient",
    "Encounter": "encounter",
    "Appointment": "appointment",
    "Goal": "goal",
    "Flag": "flag",
    "RelatedPerson": "related-person",
    "CareTeam": "care-team",
    "Condition": "condition",
    "DocumentReference": "document-reference",
    "QuestionnaireResponse": "questionnaire-response",
}


def conforms(bundle: dict[str, Any]) -> None:
    """The summary and each resource in it conform to the PeerClientSummary profile set (fhir_profiles/data)."""
    base = f"{fhir_profiles.CANONICAL}/StructureDefinition"
    assert check_conformance(bundle, f"{base}/peer-client-summary") == []
    for entry in bundle.get("entry", []):
        resource = entry["resource"]
        assert resource["resourceType"] in {*PROFILES, "OperationOutcome"}, resource["resourceType"]
        if resource["resourceType"] != "OperationOutcome":
            profile = f"{base}/peer-summary-{PROFILES[resource['resourceType']]}"
            assert check_conformance(resource, profile) == [], resource["resourceType"]


def by_type(bundle: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for entry in bundle.get("entry", []):
        found.setdefault(entry["resource"]["resourceType"], []).append(entry["resource"])
    return found


def searched(ehr: TestEhr) -> list[str]:
    """The EHR reads and searches Peerway made (their resource types, in order)."""
    return [r["path"].split("?")[0].split("/")[2] for r in ehr.requests() if r["method"] == "GET"]


async def explained(client: httpx.AsyncClient, auth: Auth, episode: dict[str, Any]) -> dict[str, Any]:
    response = await client.get(f"/api/clients/{episode['client_id']}/sharing", headers=auth(Role.COORDINATOR))
    assert response.status_code == 200, response.text
    return {c["category"]: c for c in response.json()["categories"]}


async def test_consent_to_every_category_fills_each_from_the_ehr_but_the_sud_appointment(
    app: FastAPI, client: httpx.AsyncClient, auth: Auth, settings: Settings, ehr: TestEhr
) -> None:
    seed_discharged_client(ehr.base_url, datetime.now(UTC).date())
    episode, peer, _ = await discharged_with_consent(client, auth, EVERY_CATEGORY)
    before = len(searched(ehr))
    await read_background(app, settings, ehr)
    assert sorted(searched(ehr)[before:]) == sorted(
        ["Patient", "Appointment", "Goal", "Flag", "RelatedPerson", "CareTeam", "Condition", "DocumentReference"]
    )

    shown = by_type(await summary(client, auth, episode, peer))
    # Upcoming appointments: the family doctor and the mental health team; not the past one, and not the one at
    # the addiction clinic (labelled SUD, which the consent does not name).
    appointments = shown["Appointment"]
    assert sorted(a["serviceType"][0]["text"] for a in appointments) == [
        "Community mental health team",
        "Family doctor follow-up",
    ]
    assert all(SUD not in a.get("meta", {}).get("security", []) for a in appointments)
    assert {p["actor"].get("display") for a in appointments for p in a["participant"]} >= {
        "Methuen Family Health Centre",
        "Jordan Lee, RN",
    }
    assert sorted(g["description"]["text"] for g in shown["Goal"]) == [
        "Keep a regular sleep routine",
        "Return to part-time work at the bakery",
    ]
    assert all("note" not in g for g in shown["Goal"])
    # Safety: the dog at home, not the diet flag meant for ward staff.
    [flag] = shown["Flag"]
    assert flag["code"]["text"].startswith("Large dog at home")
    # Community supports: the sister (phone, no fax, no birth date or address), and the people outside the
    # hospital on the care team; not the ward psychiatrist.
    [sister] = shown["RelatedPerson"]
    assert sister["telecom"] == [{"system": "phone", "value": "555-201-7788", "use": "mobile"}]
    assert "birthDate" not in sister
    assert "address" not in sister
    [team] = shown["CareTeam"]
    assert [p["member"]["display"] for p in team["participant"]] == [
        "Sam Patel (Merrimack Valley CMHA)",
        "Maria Halvorson",
    ]
    assert shown["Condition"][0]["code"]["coding"][0]["code"] == "35489007"
    assert "data" not in shown["DocumentReference"][0]["content"][0]["attachment"]
    # The Patient: preferred name and pronouns, phone, the town without geolocation or street.
    [patient] = shown["Patient"]
    assert patient["name"] == [{"use": "usual", "given": ["Eli"]}]  # the name he goes by, read from the EHR
    assert patient["extension"][0]["url"] == "http://hl7.org/fhir/StructureDefinition/individual-pronouns"
    assert "identifier" not in patient
    assert "birthDate" not in patient
    assert "line" not in patient["address"][0]
    assert "extension" not in patient["address"][0]
    # Never the EHR's ids: every reference points into Peerway, every id is Peerway's.
    text = str(shown)
    for ehr_id in ("seed-appt", "seed-goal", "seed-flag", "seed-support", "seed-careteam", "Practitioner/"):
        assert ehr_id not in text
    assert PATIENT_ID not in text

    # The audit names each item: the SUD appointment withheld (with its label), the others disclosed.
    found = await client.get("/fhir/AuditEvent", params={"patient": episode["patient"]}, headers=auth(Role.COORDINATOR))
    [event] = [e["resource"] for e in found.json()["entry"]]
    AuditEvent.model_validate(event)
    items = [e for e in event["entity"] if str(e.get("description", "")).startswith("item ")]
    withheld = [e for e in items if e["description"] == "item withheld"]
    assert [e["securityLabel"] for e in withheld] == [[SUD]]
    assert withheld[0]["detail"] == [{"type": "data-category", "valueString": "upcoming-appointments"}]
    disclosed = {e["what"]["reference"] for e in items if e["description"] == "item disclosed"}
    assert {f"Appointment/{a['id']}" for a in appointments} | {f"Goal/{g['id']}" for g in shown["Goal"]} <= disclosed
    assert withheld[0]["what"]["reference"] not in disclosed

    # The coordinator sees what was read and when, and why one appointment is withheld.
    categories = await explained(client, auth, episode)
    appointments_row = categories["upcoming-appointments"]
    assert appointments_row["shared"]
    assert appointments_row["items"] == 3
    assert appointments_row["withheld_items"] == 1
    assert appointments_row["fetch"]["status"] == "ok"
    assert "substance use disorder" in appointments_row["reason"]
    # The EHR's consent consult agrees: appointments permitted, with the SUD label to redact.
    hook = {
        "hook": "patient-consent-consult",
        "hookInstance": "00000000-0000-4000-8000-000000000002",
        "context": {
            "patientId": [{"value": episode["client_id"]}],
            "actor": [{"system": fhir_profiles.PEER_IDENTIFIER_SYSTEM, "value": peer["id"]}],
            "purposeOfUse": ["COC"],
            "class": [{"system": CATEGORY, "code": "upcoming-appointments"}],
        },
    }
    answer = await client.post("/cds-services/patient-consent-consult", json=hook, headers=auth(Role.EHR_SYSTEM))
    card = answer.json()["cards"][0]
    assert card["summary"] == "CONSENT_PERMIT"
    [obligation] = card["extension"]["obligations"]
    assert obligation["id"]["code"] == "REDACT"
    assert obligation["parameters"]["codes"] == [SUD]


async def test_consent_to_some_reads_and_shows_exactly_those_and_withdrawal_forgets_them(
    app: FastAPI, client: httpx.AsyncClient, auth: Auth, settings: Settings, ehr: TestEhr
) -> None:
    seed_discharged_client(ehr.base_url, datetime.now(UTC).date())
    episode, peer, consent = await discharged_with_consent(
        client, auth, ["upcoming-appointments", "safety-considerations"]
    )
    before = len(searched(ehr))
    await read_background(app, settings, ehr)
    # Collect no more than is needed: only the consented categories are read from the EHR.
    assert sorted(searched(ehr)[before:]) == ["Appointment", "Flag"]
    shown = by_type(await summary(client, auth, episode, peer))
    assert set(shown) == {"Appointment", "Flag"}

    consent["status"] = "inactive"
    withdrawn = await client.put(f"/fhir/Consent/{consent['id']}", json=consent, headers=auth(Role.COORDINATOR))
    assert withdrawn.status_code == 200, withdrawn.text
    assert by_type(await summary(client, auth, episode, peer)) == {}
    categories = await explained(client, auth, episode)
    # Deleted, not only hidden: nothing is held of the withdrawn categories, and no read of them is kept.
    assert categories["upcoming-appointments"]["items"] == 0
    assert categories["upcoming-appointments"]["fetch"] is None
    assert categories["safety-considerations"]["items"] == 0


async def test_an_ehr_outage_leaves_the_summary_answering_with_what_it_had_marked_stale(
    app: FastAPI, client: httpx.AsyncClient, auth: Auth, settings: Settings, ehr: TestEhr
) -> None:
    seed_discharged_client(ehr.base_url, datetime.now(UTC).date())
    episode, peer, _ = await discharged_with_consent(client, auth, ["preferred-name", "recovery-goals"])
    await read_background(app, settings, ehr)
    assert len(by_type(await summary(client, auth, episode, peer))["Goal"]) == 2

    # The EHR goes down; a re-read (a new consent queues one) fails but the discharge data and goals stay.
    ehr.fault(status=503, count=50)
    more = peer_consent(episode["patient"], ["upcoming-appointments"], actor=peer["practitioner"])
    assert (await client.post("/fhir/Consent", json=more, headers=auth(Role.COORDINATOR))).status_code == 201
    await read_background(app, settings, ehr)
    bundle = await summary(client, auth, episode, peer)
    shown = by_type(bundle)
    assert len(shown["Goal"]) == 2
    assert "Patient" in shown
    [outcome] = shown["OperationOutcome"]
    [notice] = [e for e in bundle["entry"] if e["resource"]["resourceType"] == "OperationOutcome"]
    assert notice["fullUrl"] == f"urn:uuid:{outcome['id']}"  # no URL that would not resolve
    stale = {issue["details"]["coding"][0]["code"] for issue in outcome["issue"]}
    assert "upcoming-appointments" in stale
    assert all(issue["code"] == "incomplete" for issue in outcome["issue"])
    categories = await explained(client, auth, episode)
    assert categories["upcoming-appointments"]["fetch"]["status"] == "failed"
    ehr.clear_faults()


async def test_a_consent_recorded_on_the_ward_has_the_background_read_at_discharge(
    app: FastAPI, client: httpx.AsyncClient, auth: Auth, settings: Settings, ehr: TestEhr
) -> None:
    seed_discharged_client(ehr.base_url, datetime.now(UTC).date())
    admitted = await discharge(client, auth, ADMIT)
    peer = await register_peer(client, auth)
    await assign(client, auth, admitted["id"], peer["id"])
    consent = peer_consent(admitted["patient"], ["recovery-goals"], actor=peer["practitioner"])
    assert (await client.post("/fhir/Consent", json=consent, headers=auth(Role.COORDINATOR))).status_code == 201
    await read_background(app, settings, ehr)
    assert searched(ehr) == []  # nothing is read while the client is on the ward

    episode = await discharge(client, auth)
    await read_background(app, settings, ehr)
    assert searched(ehr) == ["Goal"]
    assert len(by_type(await summary(client, auth, episode, peer))["Goal"]) == 2


async def test_the_periodic_re_read_queues_old_backgrounds_once_and_picks_up_changes(
    app: FastAPI, client: httpx.AsyncClient, auth: Auth, settings: Settings, ehr: TestEhr
) -> None:
    seed_discharged_client(ehr.base_url, datetime.now(UTC).date())
    episode, peer, _ = await discharged_with_consent(client, auth, ["recovery-goals"])
    await read_background(app, settings, ehr)
    assert await queue_refreshes(app.state.sessions) == 0  # just read

    # The EHR adds a goal; six hours on, the check queues one re-read (not two) and the summary shows it.
    goal = {
        "resourceType": "Goal",
        "id": "seed-goal-walk",
        "lifecycleStatus": "active",
        "description": {"text": "Walk to the library twice a week"},
        "subject": {"reference": f"Patient/{PATIENT_ID}"},
    }
    async with httpx.AsyncClient() as http:
        assert (await http.put(f"{ehr.base_url}/Goal/seed-goal-walk", json=goal)).status_code == 201
    later = datetime.now(UTC) + REFRESH_AFTER + timedelta(minutes=1)
    assert await queue_refreshes(app.state.sessions, later) == 1
    assert await queue_refreshes(app.state.sessions, later) == 0
    await read_background(app, settings, ehr)
    assert len(by_type(await summary(client, auth, episode, peer))["Goal"]) == 3


class HostileEhr:
    """An EHR (the Reader protocol) whose Patient is invalid and whose Goal answer nests past any resource."""

    async def read(self, resource_type: str, resource_id: str) -> dict[str, Any] | None:
        return {"resourceType": "Patient", "id": resource_id, "birthDate": "the day before yesterday"}

    async def search(self, resource_type: str, params: Any) -> list[dict[str, Any]]:
        deep: dict[str, Any] = {"text": "deep"}
        for _ in range(200):
            deep = {"url": "http://ehr.example.org/x", "extension": [deep]}
        return [
            {
                "resourceType": "Goal",
                "id": "deep",
                "lifecycleStatus": "active",
                "description": {"text": "x", "extension": [deep]},
                "subject": {"reference": f"Patient/{PATIENT_ID}"},
            }
        ]


async def test_a_hostile_ehr_answer_is_a_failed_read_that_keeps_what_was_held(
    app: FastAPI, client: httpx.AsyncClient, auth: Auth, settings: Settings, ehr: TestEhr
) -> None:
    seed_discharged_client(ehr.base_url, datetime.now(UTC).date())
    episode, peer, _ = await discharged_with_consent(client, auth, ["preferred-name", "recovery-goals"])
    await read_background(app, settings, ehr)
    assert len(by_type(await summary(client, auth, episode, peer))["Goal"]) == 2

    # A 200 that is no searchset (here an OperationOutcome) is no "no goals any more": they stay, marked stale;
    # the same answer to the Patient's read is no Patient either.
    outcome_only = {"resourceType": "OperationOutcome", "issue": [{"severity": "information", "code": "informational"}]}
    odd = EhrClient(ehr.base_url, transport=httpx.MockTransport(lambda _: httpx.Response(200, json=outcome_only)))
    try:
        report = await fetch_background(app.state.sessions, odd, episode["client_id"])
    finally:
        await odd.aclose()
    assert set(report.failed) == {DataCategory.PREFERRED_NAME, DataCategory.RECOVERY_GOALS}
    shown = by_type(await summary(client, auth, episode, peer))
    assert len(shown["Goal"]) == 2
    [outcome] = shown["OperationOutcome"]
    assert [i["details"]["coding"][0]["code"] for i in outcome["issue"]] == ["preferred-name", "recovery-goals"]
    assert shown["Patient"][0]["name"] == [{"use": "usual", "given": ["Eli"]}]

    # An invalid Patient and an answer nested past reading fail their own categories; the job ends, data stays.
    report = await fetch_background(app.state.sessions, HostileEhr(), episode["client_id"])
    assert set(report.failed) == {DataCategory.PREFERRED_NAME, DataCategory.RECOVERY_GOALS}
    shown = by_type(await summary(client, auth, episode, peer))
    assert len(shown["Goal"]) == 2
    assert shown["Patient"][0]["name"] == [{"use": "usual", "given": ["Eli"]}]


async def test_a_consent_period_that_ends_purges_the_background_and_one_that_starts_brings_its_first_read(
    app: FastAPI, client: httpx.AsyncClient, auth: Auth, settings: Settings, ehr: TestEhr
) -> None:
    seed_discharged_client(ehr.base_url, datetime.now(UTC).date())
    now = datetime.now(UTC)
    episode, peer = await discharged_client_with_peer(client, auth)
    ending = peer_consent(
        episode["patient"], ["recovery-goals"], actor=peer["practitioner"], end=now + timedelta(hours=1)
    )
    starting = peer_consent(
        episode["patient"], ["safety-considerations"], actor=peer["practitioner"], start=now + timedelta(hours=2)
    )
    for consent in (ending, starting):
        assert (await client.post("/fhir/Consent", json=consent, headers=auth(Role.COORDINATOR))).status_code == 201
    before = len(searched(ehr))
    await read_background(app, settings, ehr)
    assert searched(ehr)[before:] == ["Goal"]  # the later consent is not read before it starts
    assert (await explained(client, auth, episode))["recovery-goals"]["items"] == 2
    # Half an hour on nothing has changed: the sweeps find nothing to do (and remember so).
    for _ in range(2):
        assert await review_consents(app.state.sessions, now + timedelta(minutes=30)) == (0, 0)

    # Past the first consent's end and before the second's start, with nothing else changed: the goals go.
    assert await review_consents(app.state.sessions, now + timedelta(minutes=90)) == (1, 0)
    assert (await explained(client, auth, episode))["recovery-goals"]["items"] == 0

    # Three hours on, with no consent event in between: the goals are deleted, the flag read for the first time.
    later = now + timedelta(hours=3)
    assert await queue_refreshes(app.state.sessions, later) == 1
    categories = await explained(client, auth, episode)
    assert categories["recovery-goals"]["items"] == 0
    assert categories["recovery-goals"]["fetch"] is None
    reader = EhrClient(ehr.base_url)
    try:
        report = await fetch_background(app.state.sessions, reader, episode["client_id"], now=later)
    finally:
        await reader.aclose()
    assert report.read == (DataCategory.SAFETY_CONSIDERATIONS,)
    assert (await explained(client, auth, episode))["safety-considerations"]["items"] == 1


async def test_a_client_whose_episode_the_program_ended_is_not_read_again_and_what_was_read_is_deleted(
    app: FastAPI, client: httpx.AsyncClient, auth: Auth, settings: Settings, ehr: TestEhr
) -> None:
    seed_discharged_client(ehr.base_url, datetime.now(UTC).date())
    now = datetime.now(UTC)
    episode, peer, _ = await discharged_with_consent(client, auth, ["recovery-goals"])
    starting = peer_consent(
        episode["patient"], ["safety-considerations"], actor=peer["practitioner"], start=now + timedelta(hours=2)
    )
    assert (await client.post("/fhir/Consent", json=starting, headers=auth(Role.COORDINATOR))).status_code == 201
    await read_background(app, settings, ehr)
    assert (await explained(client, auth, episode))["recovery-goals"]["items"] == 2
    assert await review_consents(app.state.sessions, now + timedelta(minutes=30)) == (0, 0)  # nothing to do
    ended = await client.post(
        f"/api/episodes/{episode['id']}/end", json={"reason": "completed"}, headers=auth(Role.COORDINATOR)
    )
    assert ended.status_code == 204, ended.text
    # The next sweep, before the second consent starts (no clock change): the ending alone deletes what was read.
    assert await review_consents(app.state.sessions, now + timedelta(minutes=40)) == (1, 0)

    # Past the re-read's age and past the second consent's start: still no read queued, and a fetch reads nothing.
    before = len(searched(ehr))
    later = now + REFRESH_AFTER + timedelta(hours=3)
    assert await queue_refreshes(app.state.sessions, later) == 0
    async with app.state.sessions() as session:  # the review deleted what was read: no peer needs it
        assert await background_store.items_of(session, episode["client_id"]) == []
        assert await background_store.fetches_of(session, episode["client_id"]) == []
    reader = EhrClient(ehr.base_url)
    try:
        report = await fetch_background(app.state.sessions, reader, episode["client_id"], now=later)
    finally:
        await reader.aclose()
    assert report.read == ()
    assert searched(ehr)[before:] == []


async def test_a_consent_given_an_end_after_a_quiet_sweep_still_purges_when_that_end_passes(
    app: FastAPI, client: httpx.AsyncClient, auth: Auth, settings: Settings, ehr: TestEhr
) -> None:
    # The sweep skips a client whose state it has seen and whose consents have no period ahead: a consent changed
    # since (here given an end) must be looked at again, or what it stops releasing would be kept.
    seed_discharged_client(ehr.base_url, datetime.now(UTC).date())
    now = datetime.now(UTC)
    episode, _, stored = await discharged_with_consent(client, auth, ["recovery-goals"])
    await read_background(app, settings, ehr)
    assert (await explained(client, auth, episode))["recovery-goals"]["items"] == 2
    assert await review_consents(app.state.sessions, now + timedelta(minutes=5)) == (0, 0)

    ending = {**stored, "provision": {**stored["provision"], "period": {"end": (now + timedelta(hours=1)).isoformat()}}}
    changed = await client.put(f"/fhir/Consent/{stored['id']}", json=ending, headers=auth(Role.COORDINATOR))
    assert changed.status_code == 200, changed.text
    assert (await explained(client, auth, episode))["recovery-goals"]["items"] == 2  # still in force

    assert await review_consents(app.state.sessions, now + timedelta(hours=2)) == (1, 0)
    assert (await explained(client, auth, episode))["recovery-goals"]["items"] == 0


async def test_a_read_queued_by_someone_else_during_a_sweep_is_not_remembered_as_the_quiet_state(
    app: FastAPI, client: httpx.AsyncClient, auth: Auth, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The outside review's race: a read queued between the sweep's look at every client and this client's review,
    # which then ends as a dead letter without reading: the client's state is back to what the sweep saw. Had the
    # quiet review been remembered with that state, no first read would ever be queued again.
    now = datetime.now(UTC)
    episode, peer = await discharged_client_with_peer(client, auth)
    starting = peer_consent(
        episode["patient"], ["recovery-goals"], actor=peer["practitioner"], start=now + timedelta(hours=1)
    )
    assert (await client.post("/fhir/Consent", json=starting, headers=auth(Role.COORDINATOR))).status_code == 201
    sessions = app.state.sessions
    assert await review_consents(sessions, now + timedelta(minutes=5)) == (0, 0)  # before it starts

    seen = background_store.review_states

    async def then_someone_queues(session: Any, kind: str) -> dict[str, background_store.ReviewState]:
        states = await seen(session, kind)
        async with transaction(sessions) as other:
            other.add(new_job(BACKGROUND, episode["client_id"], "default", now))
        return states

    monkeypatch.setattr(background_store, "review_states", then_someone_queues)
    assert await review_consents(sessions, now + timedelta(hours=2)) == (0, 0)  # that read is enough for now
    monkeypatch.setattr(background_store, "review_states", seen)
    async with transaction(sessions) as session:  # it ends without reading
        await session.execute(update(Job).where(Job.kind == BACKGROUND).values(status="dead"))

    assert await review_consents(sessions, now + timedelta(hours=3)) == (0, 1)
