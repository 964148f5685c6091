"""Summaries decided once are kept (service/app/summary.py), and yet every change is seen on the very next read:
a new Consent version, an assignment to another peer, new background, a failed read from the EHR, a Consent
period beginning or ending. Every read, kept or not, is audited; a kept summary is the same answer."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from fastapi import FastAPI

from consent import DataCategory, Decision
from service.api.responses import FhirResponse
from service.app import summary
from service.app.disclosures import Disclosed
from service.auth import Role
from service.fhir.audit_text import AuditEventText
from service.store import background
from service.store.db import transaction
from tests.api.test_answers import response_for
from tests.api.test_summary import audit_events, record, shared
from tests.support.consents import peer_consent
from tests.support.flow import assign, discharged_client_with_peer, register_peer

Auth = Callable[..., dict[str, str]]
BASE = "http://peerway.test"


def types(bundle: dict[str, Any]) -> list[str]:
    return [e["resource"]["resourceType"] for e in bundle.get("entry", [])]


async def test_a_kept_summary_is_the_same_answer_and_every_read_is_audited(
    client: httpx.AsyncClient, auth: Auth, app: FastAPI
) -> None:
    episode, peer = await discharged_client_with_peer(client, auth)
    await record(client, auth, peer_consent(episode["patient"], ["preferred-name"], actor=peer["practitioner"]))
    sessions = app.state.sessions
    moment = datetime.now(UTC)
    first = await summary.read_summary_json(sessions, BASE, peer["id"], episode["client_id"], now=moment)
    again = await summary.read_summary_json(sessions, BASE, peer["id"], episode["client_id"], now=moment)
    as_dict = await summary.read_summary(sessions, BASE, peer["id"], episode["client_id"], now=moment)
    assert first == again == bytes(FhirResponse(as_dict).body)
    assert types(json.loads(first)) == ["Patient"]
    later = await summary.read_summary_json(
        sessions, BASE, peer["id"], episode["client_id"], now=moment + timedelta(seconds=1)
    )
    assert json.loads(later)["timestamp"] != json.loads(first)["timestamp"]
    assert json.loads(later)["entry"] == json.loads(first)["entry"]
    assert len(await audit_events(client, auth, episode["patient"])) == 4


async def test_a_new_consent_version_is_seen_on_the_next_read(client: httpx.AsyncClient, auth: Auth) -> None:
    episode, peer = await discharged_client_with_peer(client, auth)
    stored = await record(
        client, auth, peer_consent(episode["patient"], ["preferred-name"], actor=peer["practitioner"])
    )
    assert set(await shared(client, auth, episode["client_id"], peer["id"])) == {"Patient"}
    assert set(await shared(client, auth, episode["client_id"], peer["id"])) == {"Patient"}
    wider = peer_consent(episode["patient"], ["preferred-name", "admission-discharge"], actor=peer["practitioner"])
    wider["id"] = stored["id"]
    replaced = await client.put(f"/fhir/Consent/{stored['id']}", json=wider, headers=auth(Role.COORDINATOR))
    assert replaced.status_code == 200, replaced.text
    assert set(await shared(client, auth, episode["client_id"], peer["id"])) == {"Patient", "Encounter"}


async def test_a_peer_no_longer_assigned_gets_404_on_the_next_read(client: httpx.AsyncClient, auth: Auth) -> None:
    episode, first = await discharged_client_with_peer(client, auth)
    await record(client, auth, peer_consent(episode["patient"], ["preferred-name"]))
    assert set(await shared(client, auth, episode["client_id"], first["id"])) == {"Patient"}
    second = await register_peer(client, auth, "Robin Next")
    await assign(client, auth, episode["id"], second["id"])
    path = f"/fhir/Patient/{episode['client_id']}/$peer-summary"
    gone = await client.get(path, headers=auth(Role.PEER, first["id"]))
    unknown = await client.get("/fhir/Patient/no-such-client/$peer-summary", headers=auth(Role.PEER, first["id"]))
    assert gone.status_code == unknown.status_code == 404
    assert set(await shared(client, auth, episode["client_id"], second["id"])) == {"Patient"}


async def test_new_background_is_seen_on_the_next_read(client: httpx.AsyncClient, auth: Auth) -> None:
    episode, peer = await discharged_client_with_peer(client, auth)
    await record(client, auth, peer_consent(episode["patient"], ["interests"], actor=peer["practitioner"]))
    assert await shared(client, auth, episode["client_id"], peer["id"]) == {}
    answers = await client.post(
        "/fhir/QuestionnaireResponse", json=response_for(episode["client_id"]), headers=auth(Role.COORDINATOR)
    )
    assert answers.status_code == 201, answers.text
    assert "QuestionnaireResponse" in await shared(client, auth, episode["client_id"], peer["id"])


async def test_a_failed_read_from_the_ehr_is_noticed_on_the_next_read_each_notice_its_own(
    client: httpx.AsyncClient, auth: Auth, app: FastAPI
) -> None:
    episode, peer = await discharged_client_with_peer(client, auth)
    await record(client, auth, peer_consent(episode["patient"], ["preferred-name"], actor=peer["practitioner"]))
    assert "OperationOutcome" not in await shared(client, auth, episode["client_id"], peer["id"])
    async with transaction(app.state.sessions) as session:
        category = DataCategory.PREFERRED_NAME.value
        await background.record_failure(session, episode["client_id"], category, "timeout", datetime.now(UTC))
    notices = [(await shared(client, auth, episode["client_id"], peer["id"]))["OperationOutcome"] for _ in range(2)]
    assert notices[0]["issue"][0]["code"] == "incomplete"
    assert notices[0]["id"] != notices[1]["id"]


async def test_a_consent_period_ending_or_beginning_is_seen_at_that_moment(
    client: httpx.AsyncClient, auth: Auth, app: FastAPI
) -> None:
    episode, peer = await discharged_client_with_peer(client, auth)
    now = datetime.now(UTC)
    soon = now + timedelta(hours=1)
    ending = peer_consent(
        episode["patient"], ["preferred-name"], actor=peer["practitioner"], start=now - timedelta(days=1), end=soon
    )
    beginning = peer_consent(
        episode["patient"], ["admission-discharge"], actor=peer["practitioner"], start=soon, end=now + timedelta(days=9)
    )
    await record(client, auth, ending)
    await record(client, auth, beginning)
    sessions = app.state.sessions

    async def at(moment: datetime) -> list[str]:
        return types(await summary.read_summary(sessions, BASE, peer["id"], episode["client_id"], now=moment))

    assert await at(now) == ["Patient"]
    assert await at(now + timedelta(minutes=30)) == ["Patient"]  # kept
    assert await at(soon) == ["Patient", "Encounter"]  # an end is inclusive, a start too
    assert await at(soon + timedelta(microseconds=1)) == ["Encounter"]
    assert await at(now + timedelta(days=10)) == []


# What the cache keeps is PHI: little of it, one summary per client, gone once a read decides otherwise.


def kept_of(client_id: str) -> list[Any]:
    return [d for d in summary._decided.values() if d.client_id == client_id]


async def test_after_a_revocation_nothing_the_peer_was_shown_is_kept(client: httpx.AsyncClient, auth: Auth) -> None:
    episode, peer = await discharged_client_with_peer(client, auth)
    stored = await record(
        client, auth, peer_consent(episode["patient"], ["preferred-name"], actor=peer["practitioner"])
    )
    shown = await shared(client, auth, episode["client_id"], peer["id"])
    name = json.dumps(shown["Patient"]["name"], separators=(",", ":"))
    assert any(name.encode() in b"".join(d.entries) for d in kept_of(episode["client_id"]))
    stored["status"] = "inactive"
    revoked = await client.put(f"/fhir/Consent/{stored['id']}", json=stored, headers=auth(Role.COORDINATOR))
    assert revoked.status_code == 200, revoked.text
    assert await shared(client, auth, episode["client_id"], peer["id"]) == {}
    kept = kept_of(episode["client_id"])
    assert len(kept) == 1
    assert kept[0].entries == ()
    assert name not in repr(kept)


async def test_each_consent_version_replaces_the_kept_summary_and_no_consent_text_is_kept(
    client: httpx.AsyncClient, auth: Auth
) -> None:
    episode, peer = await discharged_client_with_peer(client, auth)
    consent = peer_consent(episode["patient"], ["preferred-name"], actor=peer["practitioner"])
    consent["sourceAttachment"] = {"contentType": "text/plain", "title": "signed-form-" + "q" * 4000}
    stored = await record(client, auth, consent)
    for version in range(3):
        assert set(await shared(client, auth, episode["client_id"], peer["id"])) == {"Patient"}
        assert len(kept_of(episode["client_id"])) == 1
        assert "signed-form-" not in repr(summary._decided.values())
        stored["sourceAttachment"]["title"] = f"signed-form-{version}-" + "q" * 4000
        replaced = await client.put(f"/fhir/Consent/{stored['id']}", json=stored, headers=auth(Role.COORDINATOR))
        assert replaced.status_code == 200, replaced.text
        stored = replaced.json()


async def test_a_refused_read_forgets_what_that_peer_was_shown(client: httpx.AsyncClient, auth: Auth) -> None:
    episode, first = await discharged_client_with_peer(client, auth)
    await record(client, auth, peer_consent(episode["patient"], ["preferred-name"]))
    assert set(await shared(client, auth, episode["client_id"], first["id"])) == {"Patient"}
    stranger = await register_peer(client, auth, "Sam Stranger")
    path = f"/fhir/Patient/{episode['client_id']}/$peer-summary"
    assert (await client.get(path, headers=auth(Role.PEER, stranger["id"]))).status_code == 404
    assert [d.peer_id for d in kept_of(episode["client_id"])] == [first["id"]]  # a stranger's probe evicts nothing
    second = await register_peer(client, auth, "Robin Next")
    await assign(client, auth, episode["id"], second["id"])
    assert (await client.get(path, headers=auth(Role.PEER, first["id"]))).status_code == 404
    assert kept_of(episode["client_id"]) == []
    assert set(await shared(client, auth, episode["client_id"], second["id"])) == {"Patient"}
    assert [d.peer_id for d in kept_of(episode["client_id"])] == [second["id"]]


async def test_a_summary_handed_out_is_the_callers_own(client: httpx.AsyncClient, auth: Auth, app: FastAPI) -> None:
    episode, peer = await discharged_client_with_peer(client, auth)
    await record(client, auth, peer_consent(episode["patient"], ["preferred-name"], actor=peer["practitioner"]))
    sessions = app.state.sessions
    moment = datetime.now(UTC)
    first = await summary.read_summary(sessions, BASE, peer["id"], episode["client_id"], now=moment)
    original = json.dumps(first)
    first["entry"][0]["resource"]["name"] = [{"text": "poisoned"}]
    first["entry"].append({"resource": {"resourceType": "Observation"}})
    again = await summary.read_summary(sessions, BASE, peer["id"], episode["client_id"], now=moment)
    assert json.dumps(again) == original
    rendered = await summary.read_summary_json(sessions, BASE, peer["id"], episode["client_id"], now=moment)
    assert b"poisoned" not in rendered
    assert json.loads(rendered) == json.loads(original)


def _decided_of(client_id: str, size: int) -> Any:
    return summary._Decided(
        digest=client_id.encode(),
        at=datetime(2026, 1, 1, tzinfo=UTC),
        until=None,
        client_id=client_id,
        peer_id="peer",
        peer_name="Peer",
        asked=(),
        decision=Decision(items=()),
        entries=(b"x" * size,),
        stale=(),
        disclosed=Disclosed(client_id, "Practitioner/peer", AuditEventText("", "", "", "4")),  # counts 0 bytes
    )


def test_the_kept_summaries_stay_within_their_byte_budget_least_recently_read_out_first() -> None:
    each = summary.ENTRY_BYTES + 1000
    kept = summary.DecidedSummaries(budget=8 * each)
    for n in range(8):
        kept.put(_decided_of(f"c{n}", 1000))
    assert kept.get("c0", b"c0", datetime(2026, 6, 1, tzinfo=UTC)) is not None  # read: now the most recent
    kept.put(_decided_of("c8", 1000))
    assert {d.client_id for d in kept.values()} == {"c0", *(f"c{n}" for n in range(2, 9))}
    for n in range(9, 20):
        kept.put(_decided_of(f"c{n}", 1000))
        assert kept.size <= kept.budget
    assert len(kept) == 8
    assert kept.size == 8 * each
    assert {d.client_id for d in kept.values()} == {f"c{n}" for n in range(12, 20)}
    kept.put(_decided_of("c19", 1000))  # the same client again: replaced, not added
    assert len(kept) == 8
    assert kept.size == 8 * each
    kept.put(_decided_of("c18", kept.budget // 8))  # too large to keep: and the old one is gone too
    assert [d.client_id for d in kept.values()].count("c18") == 0
    assert kept.size == 7 * each
    kept.clear()
    assert len(kept) == 0
    assert kept.size == 0


def test_a_kept_summary_not_read_for_a_while_is_forgotten() -> None:
    clock = [0.0]
    kept = summary.DecidedSummaries(idle=600.0, clock=lambda: clock[0])
    moment = datetime(2026, 6, 1, tzinfo=UTC)
    kept.put(_decided_of("read", 10))
    kept.put(_decided_of("unread", 10))
    clock[0] = 500.0
    assert kept.get("read", b"read", moment) is not None
    clock[0] = 1000.0  # "unread" idle for 1000 s, "read" for 500 s
    assert kept.get("read", b"read", moment) is not None
    assert [d.client_id for d in kept.values()] == ["read"]
    assert kept.size == summary.ENTRY_BYTES + 10
    clock[0] = 1601.0
    assert kept.get("read", b"read", moment) is None
    assert len(kept) == 0
    assert kept.size == 0
