"""A peer's Practitioner is written to the EHR once, not once per worker process: what one worker wrote lately
(under the same name) is remembered in the database for the others."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from service.auth import Role
from service.settings import Settings
from tests.support.delivery import deliver
from tests.support.ehr import TestEhr
from tests.support.flow import discharged_client_with_peer, peer_contact

pytestmark = pytest.mark.ehr
Auth = Callable[..., dict[str, str]]


def practitioner_puts(ehr: TestEhr) -> int:
    return sum(1 for r in ehr.requests() if r["method"] == "PUT" and r["path"].startswith("/fhir/Practitioner/"))


async def test_a_second_worker_does_not_write_the_peers_practitioner_again(
    client: httpx.AsyncClient, auth: Auth, settings: Settings, ehr: TestEhr
) -> None:
    episode, peer = await discharged_client_with_peer(client, auth)
    # Each deliver() is a new writer with nothing in memory, as a separate `peerway worker` process is.
    assert (await deliver(settings, ehr)).delivered == 1  # the CareTeam, with the Practitioner first
    assert practitioner_puts(ehr) == 1

    posted = await client.post(
        "/fhir/Encounter", json=peer_contact(episode["client_id"]), headers=auth(Role.PEER, peer["id"])
    )
    assert posted.status_code == 201, posted.text
    assert (await deliver(settings, ehr)).delivered == 1  # the contact's Encounter
    assert practitioner_puts(ehr) == 1
    assert ehr.read("Practitioner", f"peerway-{peer['id']}") is not None
