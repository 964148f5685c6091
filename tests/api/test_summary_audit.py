"""The summary is audited before it is disclosed, also when many reads arrive at once and share a commit."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
from sqlalchemy import text

from service.auth import Role
from service.settings import Settings
from service.store.db import create_engine
from tests.api.test_summary import audit_events, record, shared, summary
from tests.support.consents import peer_consent
from tests.support.flow import discharged_client_with_peer

Auth = Callable[..., dict[str, str]]
READS = 12


async def test_every_read_of_a_burst_is_audited_once(client: httpx.AsyncClient, auth: Auth) -> None:
    episode, peer = await discharged_client_with_peer(client, auth)
    await record(client, auth, peer_consent(episode["patient"], ["preferred-name"], actor=peer["practitioner"]))
    answers = await asyncio.gather(*(summary(client, auth, episode["client_id"], peer["id"]) for _ in range(READS)))
    assert [a.status_code for a in answers] == [200] * READS
    events = await audit_events(client, auth, episode["patient"])
    assert len(events) == READS
    assert len({e["id"] for e in events}) == READS
    assert {e["outcome"] for e in events} == {"0"}


async def test_a_read_whose_audit_cannot_be_committed_discloses_nothing(
    client: httpx.AsyncClient, auth: Auth, settings: Settings
) -> None:
    episode, peer = await discharged_client_with_peer(client, auth)
    await record(client, auth, peer_consent(episode["patient"], ["preferred-name"], actor=peer["practitioner"]))
    name = (await shared(client, auth, episode["client_id"], peer["id"]))["Patient"]["name"][0]["family"]
    engine = create_engine(settings.database_url)
    async with engine.begin() as connection:
        await connection.execute(text("DROP TABLE audit_event"))
    await engine.dispose()
    answers = await asyncio.gather(*(summary(client, auth, episode["client_id"], peer["id"]) for _ in range(3)))
    for answer in answers:
        assert answer.status_code >= 500
        assert answer.json()["resourceType"] == "OperationOutcome"
        assert name not in answer.text


async def test_a_consent_change_applies_to_the_read_right_after_it(client: httpx.AsyncClient, auth: Auth) -> None:
    episode, peer = await discharged_client_with_peer(client, auth)
    stored = await record(
        client, auth, peer_consent(episode["patient"], ["preferred-name"], actor=peer["practitioner"])
    )
    assert set(await shared(client, auth, episode["client_id"], peer["id"])) == {"Patient"}
    widened = peer_consent(episode["patient"], ["preferred-name", "admission-discharge"], actor=peer["practitioner"])
    response = await client.put(
        f"/fhir/Consent/{stored['id']}", json=widened | {"id": stored["id"]}, headers=auth(Role.COORDINATOR)
    )
    assert response.status_code == 200, response.text
    assert set(await shared(client, auth, episode["client_id"], peer["id"])) == {"Patient", "Encounter"}
