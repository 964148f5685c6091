"""Batch write mode: a claimed batch's contacts reach their site's EHR as one FHIR batch request (Bundle.type
"batch" of PUTs at our ids), each job recording what the EHR answered to its own entry; a batch the EHR will not
take as a whole is written one Encounter at a time instead, so nothing waits on an EHR without batch support."""

from __future__ import annotations

import json
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

import fhir_profiles
from service.auth import Role
from service.ehr.client import EhrClient
from service.errors import UpstreamError
from service.fhir import build
from service.settings import Settings
from service.store.db import create_engine, session_factory
from service.workers.writeback import UNBATCHED_AFTER_401_SECONDS, UNBATCHED_SECONDS, Writer
from tests.support.delivery import deliver, outbox, worker_settings
from tests.support.ehr import TestEhr, run_test_ehr
from tests.support.flow import discharged_client_with_peer, peer_contact

pytestmark = pytest.mark.ehr
Auth = Callable[..., dict[str, str]]
BATCH = "batch"


def identifier_of(contact: dict[str, Any]) -> str:
    return f"{fhir_profiles.CONTACT_IDENTIFIER_SYSTEM}|{contact['id']}"


async def record(
    client: httpx.AsyncClient, auth: Auth, episode: dict[str, Any], peer: dict[str, Any], n: int
) -> list[Any]:
    """`n` contacts of the episode's client, recorded by their peer."""
    contacts = []
    for minutes in range(30, 30 + n):
        posted = await client.post(
            "/fhir/Encounter",
            json=peer_contact(episode["client_id"], minutes=minutes),
            headers=auth(Role.PEER, peer["id"]),
        )
        assert posted.status_code == 201, posted.text
        contacts.append(posted.json())
    return contacts


def writes(ehr: TestEhr) -> list[tuple[str, str]]:
    return [(r["method"], r["path"].split("?")[0]) for r in ehr.requests() if r["method"] != "GET"]


async def test_contacts_reach_the_ehr_in_one_batch_request(
    client: httpx.AsyncClient, auth: Auth, settings: Settings, ehr: TestEhr
) -> None:
    episode, peer = await discharged_client_with_peer(client, auth)
    contacts = await record(client, auth, episode, peer, 3)

    report = await deliver(settings, ehr, ehr_write_mode=BATCH)

    assert (report.delivered, report.dead, report.retrying) == (4, 0, 0)  # 3 contacts and the CareTeam
    encounter_writes = [w for w in writes(ehr) if "Encounter" in w[1] or w[1].rstrip("/").endswith("/fhir")]
    assert encounter_writes == [("POST", "/fhir")]  # one batch, no Encounter PUT of its own
    for contact in contacts:
        [written] = ehr.search("Encounter", identifier=identifier_of(contact))
        assert written["id"] == contact["id"]  # at our id, as PUT mode writes it
        assert written["length"]["value"] == contact["length"]["value"]
        assert fhir_profiles.check_conformance(written, fhir_profiles.PEER_CONTACT_PROFILE) == []
    jobs = await outbox(settings.database_url)
    assert {job.status for job in jobs} == {"done"}

    # delivered again (a crash before the rows were marked): the same Encounters, no copies
    corrected = peer_contact(episode["client_id"], minutes=50) | {"id": contacts[0]["id"]}
    changed = await client.put(
        f"/fhir/Encounter/{contacts[0]['id']}",
        json=corrected,
        headers=auth(Role.PEER, peer["id"]) | {"If-Match": 'W/"1"'},
    )
    assert changed.status_code == 200, changed.text
    assert (await deliver(settings, ehr, ehr_write_mode=BATCH)).delivered == 1
    [written] = ehr.search("Encounter", identifier=identifier_of(contacts[0]))
    assert written["length"]["value"] == 50
    assert ehr.count("Encounter") == 3


async def after_a_first_delivery(
    client: httpx.AsyncClient, auth: Auth, settings: Settings, ehr: TestEhr, n: int
) -> list[Any]:
    """`n` new contacts of a client whose first contact was delivered (the peer's Practitioner is known at the
    EHR, so the next request a delivery makes is the batch), with the EHR's request log emptied."""
    episode, peer = await discharged_client_with_peer(client, auth)
    await record(client, auth, episode, peer, 1)
    assert (await deliver(settings, ehr, ehr_write_mode=BATCH)).delivered == 2
    contacts = await record(client, auth, episode, peer, n)
    ehr.reset()
    return contacts


@pytest.mark.parametrize("status", [405, 501])
async def test_a_batch_the_ehr_refuses_whole_is_written_one_by_one(
    client: httpx.AsyncClient, auth: Auth, settings: Settings, ehr: TestEhr, status: int
) -> None:
    contacts = await after_a_first_delivery(client, auth, settings, ehr, 2)
    ehr.fault(status=status)  # the next request: the batch

    report = await deliver(settings, ehr, ehr_write_mode=BATCH)

    assert (report.delivered, report.dead, report.retrying) == (2, 0, 0)
    assert [(r["method"], r["status"]) for r in ehr.requests()] == [("POST", status), ("PUT", 201), ("PUT", 201)]
    for contact in contacts:
        [written] = ehr.search("Encounter", identifier=identifier_of(contact))
        assert written["id"] == contact["id"]


def strict_profiles(directory: Path) -> Path:
    """An EHR whose copy of our PeerContact profile takes only finished contacts (a cancelled one is refused)."""
    profile = {
        "resourceType": "StructureDefinition",
        "url": fhir_profiles.PEER_CONTACT_PROFILE,
        "name": "StrictPeerContact",
        "status": "active",
        "fhirVersion": "4.0.1",
        "kind": "resource",
        "abstract": False,
        "type": "Encounter",
        "baseDefinition": "http://hl7.org/fhir/StructureDefinition/Encounter",
        "derivation": "constraint",
        "differential": {
            "element": [
                {"id": "Encounter", "path": "Encounter"},
                {"id": "Encounter.status", "path": "Encounter.status", "patternCode": "finished"},
            ]
        },
    }
    (directory / "strict-peer-contact.json").write_text(json.dumps(profile))
    (directory / "ig.json").write_text(json.dumps({"resourceType": "ImplementationGuide", "id": "strict"}))
    return directory


async def test_an_entry_the_ehr_refuses_is_a_dead_letter_and_the_others_land(
    client: httpx.AsyncClient, auth: Auth, settings: Settings, tmp_path: Path
) -> None:
    episode, peer = await discharged_client_with_peer(client, auth)
    kept, cancelled = await record(client, auth, episode, peer, 2)
    withdrawn = peer_contact(episode["client_id"], minutes=31, status="entered-in-error") | {"id": cancelled["id"]}
    answer = await client.put(
        f"/fhir/Encounter/{cancelled['id']}",
        json=withdrawn,
        headers=auth(Role.PEER, peer["id"]) | {"If-Match": 'W/"1"'},
    )
    assert answer.status_code == 200, answer.text

    with run_test_ehr(profiles_dir=strict_profiles(tmp_path)) as strict:
        report = await deliver(settings, strict, ehr_write_mode=BATCH)
        # the kept contact and the CareTeam; the cancelled one's two jobs (recorded, cancelled) take its answer
        assert (report.delivered, report.dead) == (2, 2)
        # in batches only (the cancellation's job follows the first one's, in the next claim)
        assert [r["path"] for r in strict.requests() if "Encounter" in r["path"] or r["method"] == "POST"] == [
            "/fhir"
        ] * 2
        assert [e["id"] for e in strict.search("Encounter", identifier=identifier_of(kept))] == [kept["id"]]
        assert strict.search("Encounter", identifier=identifier_of(cancelled)) == []

    dead_letters = [job for job in await outbox(settings.database_url) if job.status == "dead"]
    assert {(job.kind, job.subject_id, job.last_status) for job in dead_letters} == {("contact", cancelled["id"], 400)}
    dead = dead_letters[-1]
    assert dead.outcome_json is not None
    outcome = json.loads(dead.outcome_json)
    assert outcome["resourceType"] == "OperationOutcome"
    assert "Encounter.status" in json.dumps(outcome)  # the EHR's own words on what it refused


async def test_an_ehr_that_is_down_gets_no_burst_of_single_writes(
    client: httpx.AsyncClient, auth: Auth, settings: Settings, ehr: TestEhr
) -> None:
    contacts = await after_a_first_delivery(client, auth, settings, ehr, 3)
    ehr.fault(status=503, retryAfter=120)

    report = await deliver(settings, ehr, ehr_write_mode=BATCH)

    assert (report.delivered, report.retrying, report.dead) == (0, 3, 0)
    assert [(r["method"], r["status"]) for r in ehr.requests()] == [("POST", 503)]  # each job waits as asked
    waiting = [job for job in await outbox(settings.database_url) if job.subject_id in {c["id"] for c in contacts}]
    assert {(job.status, job.last_status) for job in waiting} == {("pending", 503)}


async def test_each_job_of_a_batch_met_by_an_outage_fails_with_its_own_exception(
    client: httpx.AsyncClient, auth: Auth, settings: Settings, ehr: TestEhr
) -> None:
    contacts = await after_a_first_delivery(client, auth, settings, ehr, 3)
    ehr.fault(status=503, retryAfter=120)
    engine = create_engine(settings.database_url)
    api = EhrClient(ehr.base_url)
    raised: list[BaseException] = []
    try:
        writer = Writer(session_factory(engine), api, worker_settings(settings, ehr, ehr_write_mode=BATCH))
        await writer.prefetch([("contact", c["id"]) for c in contacts])
        for contact in contacts:
            with pytest.raises(UpstreamError) as failed:
                await writer.deliver("contact", contact["id"])
            raised.append(failed.value)
    finally:
        await api.aclose()
        await engine.dispose()
    assert [(e.http_status, e.retry_after) for e in raised if isinstance(e, UpstreamError)] == [(503, 120.0)] * 3
    assert len({id(e) for e in raised}) == 3
    assert [len(traceback.extract_tb(e.__traceback__)) for e in raised] == [
        len(traceback.extract_tb(raised[0].__traceback__))
    ] * 3


async def test_one_contact_that_cannot_be_built_holds_up_no_other(
    client: httpx.AsyncClient, auth: Auth, settings: Settings, ehr: TestEhr, monkeypatch: pytest.MonkeyPatch
) -> None:
    episode, peer = await discharged_client_with_peer(client, auth)
    contacts = await record(client, auth, episode, peer, 3)
    built = build.contact_encounter

    def faulty(view: build.ContactView) -> dict[str, Any]:  # a defect of ours, met by one contact only
        if view.contact_id == contacts[1]["id"]:
            raise LookupError("no encounter class for this kind")
        return built(view)

    monkeypatch.setattr(build, "contact_encounter", faulty)
    report = await deliver(settings, ehr, ehr_write_mode=BATCH)

    assert (report.delivered, report.retrying) == (3, 1)  # two contacts and the CareTeam; the faulty one waits
    assert [c["id"] for c in contacts if ehr.read("Encounter", c["id"])] == [contacts[0]["id"], contacts[2]["id"]]


async def test_an_answer_kept_from_a_claim_never_done_is_not_taken_for_a_later_one(
    client: httpx.AsyncClient, auth: Auth, settings: Settings, ehr: TestEhr
) -> None:
    """A worker stopped between writing a batch and its jobs' reports keeps their answers; the contact's next
    claim must write what the contact says then, not report that old answer."""
    episode, peer = await discharged_client_with_peer(client, auth)
    [contact] = await record(client, auth, episode, peer, 1)
    engine = create_engine(settings.database_url)
    configured = worker_settings(settings, ehr, ehr_write_mode=BATCH)
    api = EhrClient(ehr.base_url)
    try:
        writer = Writer(session_factory(engine), api, configured)
        await writer.prefetch([("contact", contact["id"])])  # written in a batch; its job never reports
        withdrawn = peer_contact(episode["client_id"], minutes=30, status="entered-in-error") | {"id": contact["id"]}
        mine = auth(Role.PEER, peer["id"]) | {"If-Match": 'W/"1"'}
        assert (await client.put(f"/fhir/Encounter/{contact['id']}", json=withdrawn, headers=mine)).status_code == 200
        ehr.fault(status=405)  # this time the EHR will not take the batch: the job writes on its own

        await writer.prefetch([("contact", contact["id"])])
        await writer.deliver("contact", contact["id"])
    finally:
        await api.aclose()
        await engine.dispose()
    written = ehr.read("Encounter", contact["id"])
    assert written is not None
    assert written["status"] == "entered-in-error"


async def test_a_batch_too_large_for_the_ehr_is_sent_in_halves_and_the_next_ones_no_larger_for_a_while(
    client: httpx.AsyncClient, auth: Auth, settings: Settings, ehr: TestEhr
) -> None:
    """A 413 for a batch of several Encounters: its halves go in requests of their own, nothing is written one
    at a time, and the site's batches stay that small for UNBATCHED_SECONDS."""
    contacts = await after_a_first_delivery(client, auth, settings, ehr, 12)
    engine = create_engine(settings.database_url)
    api = EhrClient(ehr.base_url)
    now = [0.0]

    async def claim(batch: list[dict[str, Any]], fault: int | None = None) -> list[tuple[str, int]]:
        before = len(ehr.requests())
        if fault is not None:
            ehr.fault(status=fault)  # the claim's first request: its batch
        await writer.prefetch([("contact", c["id"]) for c in batch])
        for contact in batch:
            assert await writer.deliver("contact", contact["id"]) is None
        return [(r["method"], r["status"]) for r in ehr.requests()[before:]]

    try:
        writer = Writer(
            session_factory(engine), api, worker_settings(settings, ehr, ehr_write_mode=BATCH), clock=lambda: now[0]
        )
        assert await claim(contacts[:4], fault=413) == [("POST", 413), ("POST", 200), ("POST", 200)]
        assert await claim(contacts[4:8]) == [("POST", 200), ("POST", 200)]  # 2 a batch, not 4
        now[0] += UNBATCHED_SECONDS
        assert await claim(contacts[8:]) == [("POST", 200)]  # all 4 in one again
    finally:
        await api.aclose()
        await engine.dispose()
    for contact in contacts:
        assert ehr.read("Encounter", contact["id"]) is not None


@pytest.mark.parametrize(("status", "remembered"), [(405, True), (413, True), (403, True), (401, False)])
async def test_a_site_whose_ehr_refused_a_batch_is_written_one_by_one_for_a_while(
    client: httpx.AsyncClient, auth: Auth, settings: Settings, ehr: TestEhr, status: int, remembered: bool
) -> None:
    """An EHR without batch support would refuse every claim's batch: after one refusal the worker writes that
    site's Encounters one at a time, and tries a batch again only once UNBATCHED_SECONDS have passed; so for a
    413 to a batch of one Encounter (no smaller batch to try) and a 403 (our app's batches). After a 401 (a
    lapsed token) the next claim but one batches again."""
    contacts = await after_a_first_delivery(client, auth, settings, ehr, 3)
    engine = create_engine(settings.database_url)
    configured = worker_settings(settings, ehr, ehr_write_mode=BATCH)
    api = EhrClient(ehr.base_url)
    now = [0.0]
    try:
        writer = Writer(session_factory(engine), api, configured, clock=lambda: now[0])
        ehr.fault(status=status)  # the first claim's batch
        for n, contact in enumerate(contacts[:2]):  # two claims, one after the other
            if n == 1:
                now[0] += UNBATCHED_AFTER_401_SECONDS  # enough after a 401, not after the others
            await writer.prefetch([("contact", contact["id"])])
            await writer.deliver("contact", contact["id"])
        second = [("PUT", 201)] if remembered else [("POST", 200)]
        assert [(r["method"], r["status"]) for r in ehr.requests()] == [("POST", status), ("PUT", 201), *second]

        now[0] += UNBATCHED_SECONDS
        await writer.prefetch([("contact", contacts[2]["id"])])
        await writer.deliver("contact", contacts[2]["id"])
        assert [(r["method"], r["status"]) for r in ehr.requests()][3:] == [("POST", 200)]  # a batch
    finally:
        await api.aclose()
        await engine.dispose()
    for contact in contacts:
        assert ehr.read("Encounter", contact["id"]) is not None
