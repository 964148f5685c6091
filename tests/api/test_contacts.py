"""Peers record contacts with their own clients; each is queued once for the EHR."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

import fhir_profiles
from service.auth import Role
from service.store.db import create_engine, session_factory
from service.store.jobs import Job
from service.store.models import Contact
from tests.support.flow import discharged_client_with_peer, peer_contact, register_peer

Auth = Callable[..., dict[str, str]]


async def count_rows(database_url: str, model: Any) -> int:
    engine = create_engine(database_url)
    try:
        async with session_factory(engine)() as session:
            return int((await session.execute(select(func.count()).select_from(model))).scalar_one())
    finally:
        await engine.dispose()


async def test_a_contact_is_stored_and_queued_in_one_go(
    client: httpx.AsyncClient, auth: Auth, database_url: str
) -> None:
    episode, peer = await discharged_client_with_peer(client, auth)
    response = await client.post(
        "/fhir/Encounter", json=peer_contact(episode["client_id"]), headers=auth(Role.PEER, peer["id"])
    )
    assert response.status_code == 201, response.text
    encounter = response.json()
    assert response.headers["location"].endswith(f"/fhir/Encounter/{encounter['id']}/_history/1")
    assert encounter["status"] == "finished"
    assert encounter["subject"] == {"reference": f"Patient/{episode['client_id']}"}
    assert encounter["length"]["value"] == 60
    assert fhir_profiles.check_conformance(encounter, fhir_profiles.PEER_CONTACT_PROFILE) == []
    assert await count_rows(database_url, Contact) == 1
    assert await count_rows(database_url, Job) == 2  # the contact, and the CareTeam of the assignment
    read = await client.get(f"/fhir/Encounter/{encounter['id']}", headers=auth(Role.PEER, peer["id"]))
    assert read.json() == encounter


async def test_the_same_app_identifier_twice_records_one_contact(
    client: httpx.AsyncClient, auth: Auth, database_url: str
) -> None:
    episode, peer = await discharged_client_with_peer(client, auth)
    body = peer_contact(episode["client_id"], identifier=[{"system": "urn:ietf:rfc:3986", "value": "urn:uuid:1"}])
    first = await client.post("/fhir/Encounter", json=body, headers=auth(Role.PEER, peer["id"]))
    second = await client.post("/fhir/Encounter", json=body, headers=auth(Role.PEER, peer["id"]))
    assert (first.status_code, second.status_code) == (201, 200)
    assert second.json()["id"] == first.json()["id"]
    assert await count_rows(database_url, Job) == 2  # one contact, and the CareTeam of the assignment


async def test_a_peer_cannot_record_a_contact_for_someone_elses_client(
    client: httpx.AsyncClient, auth: Auth, database_url: str
) -> None:
    episode, _ = await discharged_client_with_peer(client, auth)
    other = await register_peer(client, auth, "Sam Other")
    response = await client.post(
        "/fhir/Encounter", json=peer_contact(episode["client_id"]), headers=auth(Role.PEER, other["id"])
    )
    unknown = await client.post(
        "/fhir/Encounter", json=peer_contact("no-such-client"), headers=auth(Role.PEER, other["id"])
    )
    assert response.status_code == unknown.status_code == 404
    # The refusal for a real client reads exactly like the one for a client who does not exist.
    assert response.json()["issue"][0]["code"] == unknown.json()["issue"][0]["code"] == "not-found"
    assert await count_rows(database_url, Contact) == 0


@pytest.mark.parametrize(
    ("change", "expression"),
    [
        (
            {
                "text": {
                    "status": "generated",
                    "div": "<div xmlns='http://www.w3.org/1999/xhtml'>felt low</div>",
                }
            },
            "Encounter.text",
        ),
        ({"reasonCode": [{"text": "psychosis"}]}, "Encounter.reasonCode"),
        (
            {"type": [{"coding": [{"system": "http://snomed.info/sct", "code": "11429006"}]}]},
            "Encounter.type",
        ),
        ({"status": "planned"}, "Encounter.status"),
        ({"subject": {"reference": "Group/1"}}, "Encounter.subject"),
        ({"length": {"value": 2, "unit": "h", "code": "h"}}, "Encounter.length"),
        ({"length": {"value": 0, "unit": "min", "code": "min"}}, "Encounter.length"),
        ({"period": {"start": "not a date"}}, "Encounter.period.start"),
        ({"period": {"start": "2026-11-20"}}, "Encounter.period.start"),
        ({"period": {"start": "2026-11-20T15:00:00Z", "end": "2026-11-20"}, "length": None}, "Encounter.period.end"),
        ({"period": {"start": "2026-11-20T15:00:00Z"}, "length": None}, "Encounter.length"),
    ],
)
async def test_contacts_outside_the_profile_are_refused_naming_the_element(
    client: httpx.AsyncClient, auth: Auth, database_url: str, change: dict[str, Any], expression: str
) -> None:
    episode, peer = await discharged_client_with_peer(client, auth)
    body = {k: v for k, v in (peer_contact(episode["client_id"]) | change).items() if v is not None}
    response = await client.post("/fhir/Encounter", json=body, headers=auth(Role.PEER, peer["id"]))
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["issue"][0]["expression"] == [expression]
    assert await count_rows(database_url, Contact) == 0


async def test_coordinators_and_ehrs_cannot_post_contacts(client: httpx.AsyncClient, auth: Auth) -> None:
    episode, _ = await discharged_client_with_peer(client, auth)
    for role in (Role.COORDINATOR, Role.EHR_SYSTEM):
        response = await client.post("/fhir/Encounter", json=peer_contact(episode["client_id"]), headers=auth(role))
        assert response.status_code == 403


async def test_a_recorded_contact_wakes_the_worker(app: FastAPI, client: httpx.AsyncClient, auth: Auth) -> None:
    """Its Encounter leaves for the EHR at once, not at the worker's next poll (the quick start waited ~1 s)."""
    episode, peer = await discharged_client_with_peer(client, auth)
    wake = asyncio.Event()
    app.state.worker_wake = wake
    response = await client.post(
        "/fhir/Encounter", json=peer_contact(episode["client_id"]), headers=auth(Role.PEER, peer["id"])
    )
    assert response.status_code == 201
    assert wake.is_set()
