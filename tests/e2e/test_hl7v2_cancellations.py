"""HL7 v2 cancellations end to end, over MLLP: a discharge cancelled after the peer's contact was written back
to the EHR, and an admission cancelled after a peer was assigned (docs/hospital-events.md, "HL7 v2 feeds")."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from sqlalchemy import select

import fhir_profiles
from service.auth import Role
from service.settings import Settings
from service.store.jobs import Job
from service.store.matching import EpisodeClosure
from tests.support.delivery import deliver, outbox
from tests.support.ehr import TestEhr
from tests.support.flow import assign, peer_contact, register_peer
from tests.support.hl7v2 import Feed, Visit, adt, running_feed, send_one, stored

pytestmark = pytest.mark.ehr
Auth = Callable[..., dict[str, str]]
DISCHARGED = Visit(discharged="20261110120000", disposition="01")


@pytest.fixture
async def feed(settings: Settings) -> AsyncIterator[Feed]:
    async with running_feed(settings) as running:
        yield running


def seed_patient(ehr: TestEhr) -> None:
    """The EHR holds the Patient the feed names (the written-back contact refers to it)."""
    with httpx.Client(base_url=ehr.base_url + "/") as http:
        response = http.put("Patient/N1001", json={"resourceType": "Patient", "id": "N1001"})
        assert response.status_code in (200, 201), response.text


async def coordinator_episodes(client: httpx.AsyncClient, auth: Auth) -> list[dict[str, object]]:
    listed = await client.get("/api/episodes", headers=auth(Role.COORDINATOR, "coord"))
    assert listed.status_code == 200
    result: list[dict[str, object]] = listed.json()
    return result


async def test_a_discharge_cancelled_after_a_contact_was_written_back_keeps_the_peer_and_the_contact(
    feed: Feed, client: httpx.AsyncClient, auth: Auth, settings: Settings, ehr: TestEhr
) -> None:
    seed_patient(ehr)
    assert (await send_one(feed.port, adt("A01", "CD-1"))).code == "AA"
    assert (await send_one(feed.port, adt("A03", "CD-2", DISCHARGED))).code == "AA"
    [episode] = await coordinator_episodes(client, auth)
    peer = await register_peer(client, auth)
    await assign(client, auth, str(episode["id"]), peer["id"])
    posted = await client.post(
        "/fhir/Encounter", json=peer_contact(str(episode["client_id"])), headers=auth(Role.PEER, peer["id"])
    )
    assert posted.status_code == 201, posted.text
    assert (await deliver(settings, ehr)).delivered == 2  # the contact and the CareTeam
    contact_query = f"{fhir_profiles.CONTACT_IDENTIFIER_SYSTEM}|{posted.json()['id']}"
    [written] = ehr.search("Encounter", identifier=contact_query)
    jobs_before = len(await outbox(settings.database_url))

    ack = await send_one(feed.port, adt("A13", "CD-3", Visit(expected="20261120")))
    assert (ack.code, ack.message) == ("AA", "A13: discharge cancelled; episode back on the ward")

    [back] = await coordinator_episodes(client, auth)
    assert (back["id"], back["state"], back["discharged_at"], back["peer_id"]) == (
        episode["id"], "on-ward", None, peer["id"],
    )  # fmt: skip
    # The contact happened: it stays with the episode and at the EHR, unchanged; nothing new is queued.
    assert len(await outbox(settings.database_url)) == jobs_before
    assert (await deliver(settings, ehr)).claimed == 0
    assert ehr.search("Encounter", identifier=contact_query) == [written]
    mine = await client.get("/api/me/clients", headers=auth(Role.PEER, peer["id"]))
    assert [c["client_id"] for c in mine.json()] == [episode["client_id"]]
    # The discharge can come again and moves the stay out as before.
    assert (await send_one(feed.port, adt("A03", "CD-4", DISCHARGED))).code == "AA"
    [out] = await coordinator_episodes(client, auth)
    assert (out["state"], out["peer_id"]) == ("in-community", peer["id"])


async def test_a_cancelled_admission_withdraws_the_stay_and_frees_the_peer(
    feed: Feed, client: httpx.AsyncClient, auth: Auth, settings: Settings
) -> None:
    assert (await send_one(feed.port, adt("A01", "CA-1"))).code == "AA"
    [episode] = await coordinator_episodes(client, auth)
    peer = await register_peer(client, auth)
    await assign(client, auth, str(episode["id"]), peer["id"])

    ack = await send_one(feed.port, adt("A11", "CA-2"))
    assert (ack.code, ack.message) == ("AA", "A11: admission cancelled; episode closed")

    async with feed.sessions() as session:
        closure = await session.get(EpisodeClosure, episode["id"])
        careteam_jobs = (await session.execute(select(Job).where(Job.subject_id == episode["id"]))).scalars().all()
    assert closure is not None
    assert closure.reason == "admission-cancelled"
    assert len(careteam_jobs) == 2  # the assignment's CareTeam, and the one that takes the peer off it
    mine = await client.get("/api/me/clients", headers=auth(Role.PEER, peer["id"]))
    assert mine.json() == []
    # The next real admission of the client is a new stay, not a readmission.
    assert (await send_one(feed.port, adt("A01", "CA-3", Visit(visit="V5002")))).code == "AA"
    episodes, _, _ = await stored(feed.sessions)
    assert [(e.ehr_encounter_id, e.state, e.readmission) for e in episodes][-1] == ("V5002", "on-ward", False)
    assert episodes[-1].previous_episode_id is None


async def test_a_cancellation_of_an_unknown_stay_is_acknowledged_without_effect(feed: Feed) -> None:
    for trigger in ("A11", "A12", "A13"):
        ack = await send_one(feed.port, adt(trigger, f"UK-{trigger}"))
        assert (ack.code, ack.message) == ("AA", f"{trigger}: no such stay; cancellation recorded without effect")
    assert (await stored(feed.sessions))[0] == []
