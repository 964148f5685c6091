"""Steps of the program that several tests walk through over the API."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

import fhir_profiles
from service.auth import Role
from tests.conftest import fixture_json

Auth = Callable[..., dict[str, str]]
ADMIT = "davinci/davinci-alerts-admit-notification-message-bundle-01.json"
DISCHARGE = "davinci/davinci-alerts-discharge-notification-message-bundle-01.json"
CONSENTSCOPE = "http://terminology.hl7.org/CodeSystem/consentscope"
CONSENTACTION = "http://terminology.hl7.org/CodeSystem/consentaction"


async def discharge(client: httpx.AsyncClient, auth: Auth, bundle: str = DISCHARGE) -> dict[str, Any]:
    """Send a Da Vinci notification; answer the client's episode as the coordinator sees it."""
    response = await client.post(
        "/fhir/$process-message",
        content=json.dumps(fixture_json(bundle)),
        headers=auth(Role.EHR_SYSTEM, "hospital", **{"Content-Type": "application/fhir+json"}),
    )
    assert response.status_code == 200, response.text
    listed = await client.get("/api/episodes", headers=auth(Role.COORDINATOR, "coord"))
    episode: dict[str, Any] = listed.json()[-1]
    return episode


async def register_peer(client: httpx.AsyncClient, auth: Auth, name: str = "Alex Morgan") -> dict[str, Any]:
    response = await client.post("/api/peers", json={"name": name}, headers=auth(Role.COORDINATOR, "coord"))
    assert response.status_code == 201, response.text
    peer: dict[str, Any] = response.json()
    return peer


async def assign(client: httpx.AsyncClient, auth: Auth, episode_id: str, peer_id: str) -> None:
    response = await client.put(
        f"/api/episodes/{episode_id}/peer", json={"peer_id": peer_id}, headers=auth(Role.COORDINATOR, "coord")
    )
    assert response.status_code == 200, response.text


async def discharged_client_with_peer(client: httpx.AsyncClient, auth: Auth) -> tuple[dict[str, Any], dict[str, Any]]:
    episode = await discharge(client, auth)
    peer = await register_peer(client, auth)
    await assign(client, auth, episode["id"], peer["id"])
    return episode, peer


def peer_contact(client_id: str, kind: str = "community-visit", minutes: int = 60, **extra: Any) -> dict[str, Any]:
    """A PeerContact Encounter as a peer's app would post it."""
    start = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)
    contact: dict[str, Any] = {
        "resourceType": "Encounter",
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "FLD"},
        "type": [{"coding": [{"system": fhir_profiles.PEER_CONTACT_KIND_SYSTEM, "code": kind}]}],
        "subject": {"reference": f"Patient/{client_id}"},
        "period": {"start": start.isoformat(), "end": (start + timedelta(minutes=minutes)).isoformat()},
        "length": {"value": minutes, "unit": "min", "system": "http://unitsofmeasure.org", "code": "min"},
    }
    contact.update(extra)
    return contact


async def client_with_contact(
    client: httpx.AsyncClient, auth: Auth
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """A discharged client, their assigned peer, and one contact the peer recorded (as Peerway answered it)."""
    episode, peer = await discharged_client_with_peer(client, auth)
    posted = await client.post(
        "/fhir/Encounter", json=peer_contact(episode["client_id"]), headers=auth(Role.PEER, peer["id"])
    )
    assert posted.status_code == 201, posted.text
    contact: dict[str, Any] = posted.json()
    return episode, peer, contact
