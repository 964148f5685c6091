"""HL7 v2 ADT over a real MLLP connection: ACKs, the episodes they make (the same as Da Vinci's), replays,
concurrent copies, unregistered senders and broken framing. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from sqlalchemy.exc import OperationalError

from service.app.clock import utcnow
from service.app.feeds import add_feed, list_feeds
from service.app.sites import SiteSpec, add_site, update_site
from service.auth import Role
from service.errors import Conflict
from service.settings import Settings
from service.store.db import transaction
from service.store.feeds import Hl7Feed
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


def processing(message: str, processing_id: str) -> str:
    """The message with MSH-11 (processing id) set."""
    head, _, rest = message.partition("\r")
    fields = head.split("|")
    fields[10] = processing_id
    return "|".join(fields) + "\r" + rest


@pytest.mark.parametrize("processing_id", ["T", "D", ""])
async def test_a_training_or_debugging_message_never_opens_a_real_episode(feed: Feed, processing_id: str) -> None:
    ack = await send_one(feed.port, processing(adt("A01", "TR-1"), processing_id))
    assert ack.code == "AR"
    assert ack.segment("ERR")[2:4] == ["MSH^1^11", "202^Unsupported processing id^HL70357"]
    assert await stored(feed.sessions) == ([], [], 0)
    [view] = await list_feeds(feed.sessions)
    assert view.refused == 1  # the feed's health shows it
    assert (await send_one(feed.port, adt("A01", "TR-1"))).code == "AA"  # nothing was kept: the P one is taken


async def test_a_test_install_takes_training_messages_only(settings: Settings) -> None:
    async with running_feed(settings.model_copy(update={"hl7_processing_id": "T"})) as training:
        assert (await send_one(training.port, adt("A01", "TI-1"))).code == "AR"  # production, at a test install
        assert (await send_one(training.port, processing(adt("A01", "TI-2"), "T"))).code == "AA"
        [episode], _, _ = await stored(training.sessions)
        assert episode.state == "on-ward"


async def test_a_latin_1_message_gets_its_ack_in_latin_1_with_msh_18_echoed(feed: Feed) -> None:
    head, _, rest = adt("A01", "L1-1").partition("\r")
    fields = head.split("|") + [""] * 3
    fields[2], fields[17] = "HÔPITAL", "8859/1"  # MSH-3 (sending application), MSH-18
    client = await MllpClient.connect(feed.port)
    client.writer.write(frame(("|".join(fields[:18]) + "\r" + rest).encode("latin-1")))
    await client.writer.drain()
    ack = await client.receive(encoding="latin-1")
    await client.close()
    assert ack.code == "AA", ack.text
    assert ack.segment("MSH")[4] == "HÔPITAL"  # MSH-5 names the sender as it wrote itself
    assert ack.segment("MSH")[17] == "8859/1"


@pytest.mark.parametrize("version", ["2.7", "2.8"])
async def test_from_2_7_the_ack_has_no_msa_3_and_an_error_says_why_in_err_8(feed: Feed, version: str) -> None:
    accepted = await send_one(feed.port, adt("A01", f"M3-{version}", version=version))
    assert accepted.segment("MSA") == ["MSA", "AA", f"M3-{version}"]  # MSA-3 was withdrawn in 2.7
    refused = await send_one(feed.port, adt("A01", f"M3E-{version}", Visit(visit=""), version=version))
    assert refused.segment("MSA") == ["MSA", "AE", f"M3E-{version}"]
    err = refused.segment("ERR")
    assert err[2:5] == ["PV1^1^19", "101^Required field missing^HL70357", "E"]
    assert "PV1-19" in err[8]  # ERR-8, the user message
    older = await send_one(feed.port, adt("A01", "M3E-2.5", Visit(visit=""), version="2.5"))
    assert "PV1-19" in older.message  # before 2.7, MSA-3 holds it


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


# --- every message gets an ACK (review findings) ---------------------------------------------------------------


@pytest.mark.parametrize(
    "stamp",
    [
        "00010101000000+0500",  # year 1 east of UTC: before datetime.min in UTC
        "99991231235959-0500",  # year 9999 west of UTC: after datetime.max in UTC
        "99991231230000",  # the feed's zone (Toronto) is west of UTC
        "20261120120000+2400",  # an offset of a whole day
    ],
)
async def test_a_time_outside_what_utc_can_hold_gets_ae_naming_the_field(feed: Feed, stamp: str) -> None:
    ack = await send_one(feed.port, adt("A01", "TM-1", sent=stamp))
    assert (ack.code, ack.segment("ERR")[2], ack.segment("ERR")[3]) == ("AE", "EVN^1^2", "102^Data type error^HL70357")
    assert (await send_one(feed.port, adt("A01", "TM-2"))).code == "AA"  # the feed goes on


async def test_an_over_long_sender_is_rejected(feed: Feed) -> None:
    long_application = adt("A01", "LS-1").replace("|EPIC|", f"|{'E' * 450}|", 1)
    ack = await send_one(feed.port, long_application)
    assert (ack.code, ack.segment("ERR")[2], ack.segment("ERR")[3][:4]) == ("AR", "MSH^1^3", "102^")
    long_facility = await send_one(feed.port, adt("A01", "LS-2", facility="N" * 250))
    assert (long_facility.code, long_facility.segment("ERR")[2]) == ("AR", "MSH^1^4")
    assert long_facility.segment("ERR")[3].startswith("102^")
    assert await stored(feed.sessions) == ([], [], 0)


@pytest.mark.parametrize("prior", ["N" * 250, "N/0999", ".."])
async def test_a_merge_whose_prior_id_is_not_an_id_gets_ae(feed: Feed, prior: str) -> None:
    ack = await send_one(feed.port, merge("MR-1", surviving="N1001", prior=prior))
    assert (ack.code, ack.segment("ERR")[2], ack.segment("ERR")[3][:4]) == ("AE", "MRG^1^1", "102^")
    [view] = await list_feeds(feed.sessions)
    assert (view.refused, view.merges) == (1, ())


async def test_a_failure_of_ours_gets_ae_207_and_shows_on_the_feed(
    feed: Feed, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(*_: object) -> str:
        raise RuntimeError("N1001 O'Brien V5001")  # an error whose text quotes the message

    monkeypatch.setattr("service.app.feeds.apply_stay", broken)
    ack = await send_one(feed.port, adt("A01", "IE-1"))
    assert (ack.code, ack.control_id) == ("AE", "IE-1")
    assert ack.segment("ERR")[2:5] == ["", "207^Application internal error^HL70357", "E"]
    [view] = await list_feeds(feed.sessions)
    assert (view.status, view.refused, view.accepted) == ("error", 1, 0)
    assert view.last_error is not None
    assert "207" in view.last_error
    assert "N1001" not in view.last_error
    assert "IE-1" not in caplog.text
    assert "N1001" not in caplog.text
    monkeypatch.undo()
    assert (await send_one(feed.port, adt("A01", "IE-1"))).code == "AA"  # nothing was kept: the resend is taken


async def test_a_failure_of_ours_before_the_feed_is_known_gets_ae_207(
    feed: Feed, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*_: object) -> bool:
        raise LookupError("N1001")

    monkeypatch.setattr("service.app.feeds.is_active_site", broken)
    ack = await send_one(feed.port, adt("A01", "IE-2"))
    assert (ack.code, ack.segment("ERR")[3]) == ("AE", "207^Application internal error^HL70357")


async def test_a_database_outage_gets_no_ack_so_the_engine_resends(feed: Feed, monkeypatch: pytest.MonkeyPatch) -> None:
    async def down(*_: object) -> str:
        raise OperationalError("SELECT 1", {}, ConnectionRefusedError("database down"))

    monkeypatch.setattr("service.app.feeds.apply_stay", down)
    client = await MllpClient.connect(feed.port)
    with pytest.raises(asyncio.IncompleteReadError):
        await client.send(adt("A01", "OU-1"))
    await client.close()
    monkeypatch.undo()
    assert (await send_one(feed.port, adt("A01", "OU-1"))).code == "AA"


# --- one site per port ------------------------------------------------------------------------------------------


async def test_a_port_belongs_to_one_site(feed: Feed) -> None:
    await add_site(feed.sessions, "south", SiteSpec())
    with pytest.raises(Conflict, match="belongs to site default"):
        await add_feed(feed.sessions, "south-adt", "south", feed.port, "BGEN")
    with pytest.raises(Conflict, match="belongs to site default"):
        await add_feed(feed.sessions, "south-any", "south", feed.port)
    await add_feed(feed.sessions, "north-b", "default", feed.port, "BGEN")  # the same site: one more facility
    ack = await send_one(feed.port, adt("A01", "PS-1", facility="BGEN"))
    assert ack.code == "AA"


async def test_a_port_shared_by_two_sites_before_the_rule_takes_nothing(feed: Feed) -> None:
    await add_site(feed.sessions, "south", SiteSpec())
    async with transaction(feed.sessions) as session:  # registered before add_feed refused it
        session.add(
            Hl7Feed(
                id="south-adt", site="south", port=feed.port, facility="BGEN", timezone="UTC",
                created_at=utcnow(), accepted=0, refused=0,
            )
        )  # fmt: skip
    for facility in ("BGEN", "NORTHGEN"):
        ack = await send_one(feed.port, adt("A01", f"PS-{facility}", facility=facility))
        assert (ack.code, ack.segment("ERR")[2]) == ("AR", "MSH^1^4")
    assert await stored(feed.sessions) == ([], [], 0)


# --- the ACK in the sender's own encoding characters -----------------------------------------------------------


async def test_the_ack_is_escaped_with_the_messages_encoding_characters(feed: Feed) -> None:
    pv1 = [""] * 46
    pv1[0], pv1[1], pv1[2], pv1[19], pv1[44] = "PV1", "1", "I", "V5001", "2026-11-01"
    message = "\r".join(
        [
            "MSH|a~\\&|EPIC|NORTHGEN|PEERWAY|PEERWAY|20261130101500||ADTaA01|ES-1|P|2.5.1",
            "EVN|A01|20261130101500",
            "PID|1||N1001",
            "|".join(pv1),
        ]
    )  # "a" separates components: "Data type error" would otherwise split in three
    ack = await send_one(feed.port, message)
    assert ack.code == "AE"
    assert ack.segment("MSH")[1] == "a~\\&"
    assert ack.segment("MSH")[8].split("a") == ["ACK", "A01", "ACK"]
    assert "a" not in ack.segment("MSH")[9]  # our own control id, escaped too
    err = ack.segment("ERR")
    assert err[2].split("a") == ["PV1", "1", "44"]
    assert err[3].split("a") == ["102", "D\\S\\t\\S\\ type error", "HL70357"]
    assert "a" not in ack.message.replace("\\S\\", "")
