"""A peer asking for a client or a contact that is not theirs gets the same 404 as for one that does not exist,
and the log gets one WARNING line by ids (the peer's, and the id asked for when it is of Peerway's form), so an
operator can see a peer probing for clients. Whatever else a caller puts in the path is not logged."""

from __future__ import annotations

import logging
from collections.abc import Callable

import httpx
import pytest

from service.app.refusals import LINES_PER_WINDOW
from service.auth import Role
from tests.support.flow import client_with_contact, peer_contact, register_peer

Auth = Callable[..., dict[str, str]]
REFUSALS = "service.app.refusals"


def refusals(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == REFUSALS and r.levelno == logging.WARNING]


async def test_another_peers_client_and_contact_are_refused_and_logged(
    client: httpx.AsyncClient, auth: Auth, caplog: pytest.LogCaptureFixture
) -> None:
    episode, peer, contact = await client_with_contact(client, auth)
    other = await register_peer(client, auth, name="Sam Other")
    theirs, mine = auth(Role.PEER, other["id"]), auth(Role.PEER, peer["id"])
    summary = f"/fhir/Patient/{episode['client_id']}/$peer-summary"
    caplog.set_level(logging.INFO)

    assert (await client.get(summary, headers=mine)).status_code == 200
    assert (await client.get(f"/fhir/Encounter/{contact['id']}", headers=mine)).status_code == 200
    assert refusals(caplog) == []  # a peer's own reads are no refusals

    assert (await client.get(summary, headers=theirs)).status_code == 404
    assert (await client.get(f"/fhir/Encounter/{contact['id']}", headers=theirs)).status_code == 404
    recorded = await client.post("/fhir/Encounter", json=peer_contact(episode["client_id"]), headers=theirs)
    assert recorded.status_code == 404
    lines = refusals(caplog)
    assert len(lines) == 3
    assert all(other["id"] in line for line in lines)
    assert f"Patient/{episode['client_id']}" in lines[0]
    assert f"Encounter/{contact['id']}" in lines[1]
    assert f"Patient/{episode['client_id']}" in lines[2]


async def test_what_a_caller_puts_in_the_path_is_not_logged(
    client: httpx.AsyncClient, auth: Auth, caplog: pytest.LogCaptureFixture
) -> None:
    peer = await register_peer(client, auth)
    caplog.set_level(logging.INFO)
    for probe in ("Halvorson124-2000-10-15", "19801015-5551-2345-0000-000000000000"):  # a name; a date, UUID-shaped
        answer = await client.get(f"/fhir/Patient/{probe}/$peer-summary", headers=auth(Role.PEER, peer["id"]))
        assert answer.status_code == 404
    lines = refusals(caplog)
    assert len(lines) == 2
    assert all(peer["id"] in line for line in lines)
    assert not any("Halvorson" in line or "2000-10-15" in line or "19801015" in line for line in lines)


async def test_a_peer_probing_many_ids_cannot_flood_the_log(
    client: httpx.AsyncClient, auth: Auth, caplog: pytest.LogCaptureFixture
) -> None:
    peer = await register_peer(client, auth)
    caplog.set_level(logging.INFO)
    for n in range(LINES_PER_WINDOW + 15):
        probe = f"/fhir/Patient/00000000-0000-4000-8000-{n:012d}/$peer-summary"
        assert (await client.get(probe, headers=auth(Role.PEER, peer["id"]))).status_code == 404
    lines = refusals(caplog)
    assert len(lines) == LINES_PER_WINDOW + 1  # one by one, then one line saying the rest are counted
    assert "counted, not logged" in lines[-1]
    assert all(peer["id"] in line for line in lines)
