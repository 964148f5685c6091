"""HL7 v2 ADT over a real MLLP connection: ACKs, the episodes they make (the same as Da Vinci's), replays,
concurrent copies, unregistered senders and broken framing. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from service.app.feeds import list_feeds
from service.app.sites import SiteSpec, update_site
from service.auth import Role
from service.settings import Settings
from tests.support.consents import peer_consent
from tests.support.flow import assign, register_peer
from tests.support.hl7v2 import Feed, MllpClient, Visit, adt, frame, merge, running_feed, send_one, stored

Auth = Callable[..., dict[str, str]]
EXTENSION = "https://example.org/fhir/StructureDefinition/expected-discharge"


@pytest.fixture
async def feed(settings: Settings) -> AsyncIterator[Feed]:
    """A feed of the default site bound to NORTHGEN on a port, and the listener running on it."""
    async with running_feed(settings, EXTENSION) as running:
        yield running


DISCHARGED = Visit(discharged="20261110120000", disposition="01")


async def test_admit_then_discharge_is_acknowledged_and_moves_the_episode(feed: Feed) -> None:
    client = await MllpClient.connect(feed.port)
    admitted = await client.send(adt("A01", "MSG-1", Visit(expected="20261112")))
    assert (admitted.code, admitted.control_id) == ("AA", "MSG-1")
    assert admitted.segment("MSH")[8].startswith("ACK^A01")
    assert admitted.segment("MSH")[4:6] == ["EPIC", "NORTHGEN^2.16.840.1.113883.3.9999^ISO"]
    assert admitted.segment("MSH")[11] == "2.5.1"
    assert "episode opened on the ward" in admitted.message
    [episode], [person], _ = await stored(feed.sessions)
    assert (episode.state, episode.ehr_encounter_id, person.ehr_patient_id) == ("on-ward", "V5001", "N1001")
    assert episode.admitted_at is not None
    assert episode.admitted_at.isoformat() == "2026-11-01T13:30:00+00:00"
    assert episode.expected_discharge_at is not None
    assert episode.expected_discharge_at.day == 12
    discharged = await client.send(adt("A03", "MSG-2", DISCHARGED, separator="\n"))
    assert discharged.code == "AA"
    await client.close()
    [episode], _, messages = await stored(feed.sessions)
    assert (episode.state, episode.discharge_disposition, messages) == ("in-community", "01", 2)
    assert episode.discharged_at is not None
    assert episode.discharged_at.isoformat() == "2026-11-10T17:00:00+00:00"
    patient = json.loads(person.patient_json)
    assert patient["name"][0]["family"] == "O^Brien&Sons"  # escapes undone by the parser
    assert [i["value"] for i in patient["identifier"]] == ["N1001", "9876543210"]


@pytest.mark.parametrize("version", ["2.3", "2.4", "2.6", "2.7", "2.8"])
async def test_every_version_from_2_3_to_2_8_is_taken(feed: Feed, version: str) -> None:
    ack = await send_one(feed.port, adt("A01", f"V-{version}", version=version, separator="\r\n"))
    assert ack.code == "AA", ack.text
    assert ack.segment("MSH")[11] == version
    [episode], _, _ = await stored(feed.sessions)
    assert episode.state == "on-ward"


async def davinci(client: httpx.AsyncClient, auth: Auth, event: str, status: str, period: dict[str, str]) -> None:
    encounter: dict[str, Any] = {
        "resourceType": "Encounter",
        "id": "F5001",
        "status": status,
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
        "subject": {"reference": "Patient/F1001"},
        "period": period,
    }
    if status == "finished":
        encounter["hospitalization"] = {
            "dischargeDisposition": {
                "coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0112", "code": "01"}]
            }
        }
    bundle = {
        "resourceType": "Bundle",
        "id": f"fhir-{event}",
        "type": "message",
        "timestamp": "2026-11-30T15:15:00Z",
        "entry": [
            {
                "fullUrl": "urn:uuid:header",
                "resource": {
                    "resourceType": "MessageHeader",
                    "id": "header",
                    "eventCoding": {
                        "system": "http://hl7.org/fhir/us/davinci-alerts/CodeSystem/notification-event",
                        "code": f"notification-{event}",
                    },
                    "source": {"endpoint": "https://ehr.example/fhir"},
                    "focus": [{"reference": "Encounter/F5001"}],
                },
            },
            {"fullUrl": "https://ehr.example/fhir/Encounter/F5001", "resource": encounter},
            {
                "fullUrl": "https://ehr.example/fhir/Patient/F1001",
                "resource": {"resourceType": "Patient", "id": "F1001"},
            },
        ],
    }
    response = await client.post(
        "/fhir/$process-message",
        content=json.dumps(bundle),
        headers=auth(Role.EHR_SYSTEM, "hospital", **{"Content-Type": "application/fhir+json"}),
    )
    assert response.status_code == 200, response.text


async def test_the_episode_is_the_one_the_same_davinci_notifications_make(
    feed: Feed, client: httpx.AsyncClient, auth: Auth
) -> None:
    assert (await send_one(feed.port, adt("A01", "EQ-1"))).code == "AA"
    assert (await send_one(feed.port, adt("A03", "EQ-2", DISCHARGED))).code == "AA"
    await davinci(client, auth, "admit", "in-progress", {"start": "2026-11-01T13:30:00Z"})
    await davinci(
        client, auth, "discharge", "finished", {"start": "2026-11-01T13:30:00Z", "end": "2026-11-10T17:00:00Z"}
    )
    by_v2, by_fhir = (await stored(feed.sessions))[0]
    fields = ("state", "admitted_at", "discharged_at", "discharge_disposition", "readmission", "expected_discharge_at")
    assert {f: getattr(by_v2, f) for f in fields} == {f: getattr(by_fhir, f) for f in fields}
    v2_encounter, fhir_encounter = json.loads(by_v2.encounter_json), json.loads(by_fhir.encounter_json)
    for key in ("status", "class", "period"):
        assert v2_encounter[key] == fhir_encounter[key]
    assert (
        v2_encounter["hospitalization"]["dischargeDisposition"]
        == fhir_encounter["hospitalization"]["dischargeDisposition"]
    )
    listed = await client.get("/api/episodes", headers=auth(Role.COORDINATOR, "coord"))
    views = [{k: v for k, v in e.items() if k not in ("id", "client_id", "patient")} for e in listed.json()]
    assert views[0] == views[1]


async def test_a_replay_gets_the_first_answer_and_changes_nothing(feed: Feed) -> None:
    first = await send_one(feed.port, adt("A01", "RE-1"))
    again = await send_one(feed.port, adt("A01", "RE-1", Visit(visit="V9999")))  # same id, other content
    assert (first.code, first.message) == (again.code, again.message)
    episodes, _, messages = await stored(feed.sessions)
    assert ([e.ehr_encounter_id for e in episodes], messages) == (["V5001"], 1)


async def test_eight_concurrent_copies_are_processed_once(feed: Feed) -> None:
    acks = await asyncio.gather(*(send_one(feed.port, adt("A01", "CC-1")) for _ in range(8)))
    assert {(a.code, a.control_id, a.message) for a in acks} == {(acks[0].code, "CC-1", acks[0].message)}
    assert acks[0].code == "AA"
    episodes, clients, messages = await stored(feed.sessions)
    assert (len(episodes), len(clients), messages) == (1, 1, 1)
    [view] = await list_feeds(feed.sessions)
    assert (view.accepted, view.refused, view.status) == (1, 0, "ok")


async def test_an_unregistered_facility_is_rejected_and_nothing_is_stored(feed: Feed) -> None:
    ack = await send_one(feed.port, adt("A01", "UN-1", facility="SOUTHGEN"))
    assert ack.code == "AR"
    assert ack.segment("ERR")[2] == "MSH^1^4"
    assert ack.segment("ERR")[3].startswith("103^")
    assert await stored(feed.sessions) == ([], [], 0)


async def test_a_disabled_sites_feed_takes_nothing(feed: Feed) -> None:
    await update_site(feed.sessions, "default", SiteSpec(status="disabled"))
    ack = await send_one(feed.port, adt("A01", "DS-1"))
    assert (ack.code, ack.message, ack.segment("ERR")[2]) == ("AR", "the feed's site is disabled", "MSH^1^4")
    assert await stored(feed.sessions) == ([], [], 0)
    await update_site(feed.sessions, "default", SiteSpec(status="active"))
    assert (await send_one(feed.port, adt("A01", "DS-1"))).code == "AA"  # nothing was kept: now it is taken


async def test_a_message_understood_but_refused_gets_ae_naming_the_field(feed: Feed) -> None:
    ack = await send_one(feed.port, adt("A01", "AE-1", Visit(visit="")))
    assert ack.code == "AE"
    assert ack.segment("ERR")[2:5] == ["PV1^1^19", "101^Required field missing^HL70357", "E"]
    old = await send_one(feed.port, adt("A01", "AE-2", Visit(admitted="2026-11-01"), version="2.3"))
    assert old.code == "AE"
    assert old.segment("ERR")[1] == "PV1^1^44^102&Data type error&HL70357"  # 2.3: ERR-1
    episodes, _, messages = await stored(feed.sessions)
    assert (episodes, messages) == ([], 2)
    assert (await send_one(feed.port, adt("A01", "AE-1"))).code == "AE"  # a replay, even with the field fixed
    [view] = await list_feeds(feed.sessions)
    assert (view.status, view.refused) == ("error", 2)
    assert view.last_error is not None
    assert "PV1^1^44" in view.last_error


async def test_unsupported_versions_and_types_are_rejected(feed: Feed) -> None:
    assert (await send_one(feed.port, adt("A01", "VR-1", version="2.2"))).code == "AR"
    orm = adt("A01", "VR-2").replace("ADT^A01^ADT_A01", "ORM^O01^ORM_O01")
    rejected = await send_one(feed.port, orm)
    assert (rejected.code, rejected.segment("ERR")[2]) == ("AR", "MSH^1^9")
    assert await stored(feed.sessions) == ([], [], 0)


async def test_garbage_and_broken_framing_never_take_the_listener_down(feed: Feed) -> None:
    client = await MllpClient.connect(feed.port)
    client.writer.write(b"\x00\xff\xfe binary noise \x1c\r")  # no start block: dropped up to the end block
    not_hl7 = await client.send(b"\x89PNG\r\n\x1a\n\x00\x00")  # framed, but no message
    assert (not_hl7.code, not_hl7.control_id) == ("AR", "")
    assert (await client.send(adt("A01", "GB-1"))).code == "AA"  # the same connection still works
    await client.close()
    half = await MllpClient.connect(feed.port)
    half.writer.write(frame(adt("A01", "GB-2"))[:40])  # a half-sent block, then the sender goes away
    await half.close()
    bad_header = await send_one(feed.port, "MSH|^~\\&|X")
    assert bad_header.code == "AR"
    assert (await send_one(feed.port, adt("A03", "GB-3", DISCHARGED))).code == "AA"
    [episode], _, messages = await stored(feed.sessions)
    assert (episode.state, messages) == ("in-community", 2)


async def test_a_merge_is_acknowledged_and_shown_to_the_coordinator(
    feed: Feed, client: httpx.AsyncClient, auth: Auth
) -> None:
    assert (await send_one(feed.port, adt("A01", "MG-1"))).code == "AA"
    ack = await send_one(feed.port, merge("MG-2", surviving="N1001", prior="N0999"))
    assert ack.code == "AA"
    assert "merge recorded for the coordinator" in ack.message
    listed = await client.get("/api/feeds", headers=auth(Role.COORDINATOR, "coord"))
    assert listed.status_code == 200
    [view] = listed.json()
    assert (view["id"], view["status"], view["accepted"]) == ("north-adt", "ok", 2)
    assert [(m["merged_patient_id"], m["surviving_patient_id"]) for m in view["merges"]] == [("N0999", "N1001")]
    other_site = await client.get("/api/feeds", headers=auth(Role.COORDINATOR, "coord-b", site="south"))
    assert other_site.json() == []


async def test_the_peer_gets_the_consented_summary_of_a_client_the_feed_sent(
    feed: Feed, client: httpx.AsyncClient, auth: Auth
) -> None:
    assert (await send_one(feed.port, adt("A01", "SU-1"))).code == "AA"
    assert (await send_one(feed.port, adt("A03", "SU-2", DISCHARGED))).code == "AA"
    listed = await client.get("/api/episodes", headers=auth(Role.COORDINATOR, "coord"))
    [episode] = listed.json()
    peer = await register_peer(client, auth)
    await assign(client, auth, episode["id"], peer["id"])
    consent = peer_consent(episode["patient"], ["preferred-name", "admission-discharge"], actor=peer["practitioner"])
    recorded = await client.post("/fhir/Consent", json=consent, headers=auth(Role.COORDINATOR, "coord"))
    assert recorded.status_code == 201, recorded.text
    summary = await client.get(
        f"/fhir/Patient/{episode['client_id']}/$peer-summary", headers=auth(Role.PEER, peer["id"])
    )
    assert summary.status_code == 200, summary.text
    resources = {e["resource"]["resourceType"]: e["resource"] for e in summary.json()["entry"]}
    assert set(resources) == {"Patient", "Encounter"}
    assert resources["Patient"]["name"][0]["given"] == ["Jane", "Q"]
    assert "telecom" not in resources["Patient"]
    assert "address" not in resources["Patient"]
    assert "birthDate" not in resources["Patient"]
    assert resources["Encounter"]["period"]["end"] == "2026-11-10T17:00:00Z"
