"""Assigning (and unassigning) a peer puts them on the client's program CareTeam at the EHR, so clinicians see
who the peer is and since when — one CareTeam per episode, whatever the write mode."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fhir.resources.R4B.careteam import CareTeam

import fhir_profiles
from service.auth import Role
from service.fhir.careteam import CARE_TEAM_IDENTIFIER_SYSTEM
from service.settings import Settings
from tests.conftest import fixture_json
from tests.support.delivery import deliver, outbox
from tests.support.ehr import TestEhr
from tests.support.flow import ADMIT, assign, discharged_client_with_peer, register_peer

pytestmark = pytest.mark.ehr
Auth = Callable[..., dict[str, str]]


def the_careteam(ehr: TestEhr, episode_id: str) -> dict[str, Any]:
    [careteam] = ehr.search("CareTeam", identifier=f"{CARE_TEAM_IDENTIFIER_SYSTEM}|{episode_id}")
    CareTeam.model_validate(careteam)
    return careteam


def members(careteam: dict[str, Any]) -> list[tuple[str, bool]]:
    """(peer name, still on the team) per participant."""
    return [(p["member"]["display"], "end" not in p["period"]) for p in careteam["participant"]]


async def test_the_assigned_peer_is_on_the_clients_careteam(
    client: httpx.AsyncClient, auth: Auth, settings: Settings, ehr: TestEhr
) -> None:
    episode, peer = await discharged_client_with_peer(client, auth)
    [row] = await outbox(settings.database_url)
    assert (row.kind, row.subject_id) == ("careteam", episode["id"])  # queued with the assignment

    assert (await deliver(settings, ehr)).delivered == 1

    careteam = the_careteam(ehr, episode["id"])
    assert careteam["id"] == f"peerway-{episode['id']}"
    assert careteam["status"] == "active"
    assert careteam["meta"]["source"] == fhir_profiles.CANONICAL
    assert careteam["subject"]["reference"].startswith("Patient/")
    assert careteam["subject"]["reference"] != f"Patient/{episode['client_id']}"  # the EHR's Patient, not ours
    assert careteam["managingOrganization"][0]["reference"] == settings.program_organization_reference
    [participant] = careteam["participant"]
    assert participant["role"][0]["coding"][0] == {
        "system": fhir_profiles.PARTICIPANT_ROLE_SYSTEM,
        "code": "peer-supporter",
        "display": "Peer supporter",
    }
    assert participant["member"] == {"reference": f"Practitioner/peerway-{peer['id']}", "display": peer["name"]}
    assert "end" not in participant["period"]
    assert ehr.read("Practitioner", f"peerway-{peer['id']}") is not None


@pytest.mark.parametrize("mode", ["put", "conditional-create", "batch"])
async def test_a_new_peer_replaces_the_old_one_on_the_same_careteam(
    client: httpx.AsyncClient, auth: Auth, settings: Settings, ehr: TestEhr, mode: str
) -> None:
    episode, first = await discharged_client_with_peer(client, auth)
    await deliver(settings, ehr, ehr_write_mode=mode)
    second = await register_peer(client, auth, "Sam Rivera")
    await assign(client, auth, episode["id"], second["id"])

    assert (await deliver(settings, ehr, ehr_write_mode=mode)).delivered == 1

    careteam = the_careteam(ehr, episode["id"])
    assert members(careteam) == [(first["name"], False), (second["name"], True)]
    ended, current = careteam["participant"]
    assert ended["period"]["end"] == current["period"]["start"]
    assert ehr.count("CareTeam") == 1
    assert ehr.count("Practitioner") == 2


async def test_a_rematch_ends_the_peers_period(
    client: httpx.AsyncClient, auth: Auth, settings: Settings, ehr: TestEhr
) -> None:
    episode, peer = await discharged_client_with_peer(client, auth)
    rematched = await client.post(
        f"/api/episodes/{episode['id']}/rematch",
        json={"requested_by": "client", "reason": "no-connection"},
        headers=auth(Role.COORDINATOR),
    )
    assert rematched.status_code == 200
    assert (await deliver(settings, ehr)).delivered == 2

    careteam = the_careteam(ehr, episode["id"])
    assert members(careteam) == [(peer["name"], False)]
    assert careteam["participant"][0]["period"]["end"] >= careteam["participant"][0]["period"]["start"]


async def test_ending_the_episode_ends_the_peers_period(
    client: httpx.AsyncClient, auth: Auth, settings: Settings, ehr: TestEhr
) -> None:
    episode, peer = await discharged_client_with_peer(client, auth)
    ended = await client.post(
        f"/api/episodes/{episode['id']}/end", json={"reason": "completed"}, headers=auth(Role.COORDINATOR)
    )
    assert ended.status_code == 204
    await deliver(settings, ehr)
    assert members(the_careteam(ehr, episode["id"])) == [(peer["name"], False)]


async def test_a_readmission_carries_the_peer_onto_the_new_stays_careteam(
    client: httpx.AsyncClient, auth: Auth, settings: Settings, ehr: TestEhr
) -> None:
    episode, peer = await discharged_client_with_peer(client, auth)
    admit = fixture_json(ADMIT)
    admit["id"] = "readmission"
    admit["entry"][1]["resource"]["id"] = "second-stay"
    admit["entry"][1]["resource"]["period"] = {"start": "2019-02-01T10:00:00Z"}
    sent = await client.post("/fhir/$process-message", json=admit, headers=auth(Role.EHR_SYSTEM))
    assert sent.status_code == 200
    listed = (await client.get("/api/episodes", headers=auth(Role.COORDINATOR))).json()
    [new] = [e for e in listed if e["id"] != episode["id"]]
    assert new["peer_id"] == peer["id"]
    await deliver(settings, ehr)
    assert members(the_careteam(ehr, episode["id"])) == [(peer["name"], False)]
    assert members(the_careteam(ehr, new["id"])) == [(peer["name"], True)]
    history = (await client.get(f"/api/episodes/{episode['id']}/history", headers=auth(Role.COORDINATOR))).json()
    assert history["assignments"][-1]["end_kind"] == "new-stay"
