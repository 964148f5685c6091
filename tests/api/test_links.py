"""One person at two sites: linked only by the deployment's shared identifier, shown only under consent."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from service.app.sites import SiteSpec, add_site
from service.auth import Role
from service.auth.keys import load_or_create
from service.settings import Settings
from service.store import repository
from service.store.db import SessionFactory
from tests.conftest import fixture_json
from tests.support.consents import CONSENTACTION, peer_consent
from tests.support.flow import DISCHARGE
from tests.support.identity import TestIdentities

SHARED = "http://example.org/fhir/pid"  # the Da Vinci examples' patient identifier stands in for a health number
EHR_PATIENT = "06e1f0dd-5fbe-4480-9bb4-6b54ec02d31b"  # the examples' Patient.id (and its pid value)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"link_identifier_system": SHARED})


def headers(settings: Settings, role: Role, site: str) -> dict[str, str]:
    identities = TestIdentities(settings.database_url, settings.base_url, load_or_create(Path(settings.auth_keys_path)))
    return identities.headers(role, f"{role.value}-{site}", site=site)


async def discharge_at(client: httpx.AsyncClient, settings: Settings, site: str, bundle: dict[str, Any]) -> None:
    response = await client.post(
        "/fhir/$process-message",
        content=json.dumps(bundle),
        headers={**headers(settings, Role.EHR_SYSTEM, site), "Content-Type": "application/fhir+json"},
    )
    assert response.status_code == 200, response.text


async def client_id(app: FastAPI, site: str, ehr_patient_id: str = EHR_PATIENT) -> str:
    sessions: SessionFactory = app.state.sessions
    async with sessions() as session:
        found = await repository.client_by_ehr_id(session, site, ehr_patient_id)
    assert found is not None
    return found.id


def disclose_to(patient: str, recipient: str) -> dict[str, Any]:
    """A Consent permitting the recipient site's coordinators to learn of this stay (admission-discharge)."""
    consent = peer_consent(patient, ["admission-discharge"], actor=recipient)
    consent["provision"]["action"] = [{"coding": [{"system": CONSENTACTION, "code": "disclose"}]}]
    return consent


async def record(client: httpx.AsyncClient, settings: Settings, site: str, consent: dict[str, Any]) -> None:
    response = await client.post("/fhir/Consent", json=consent, headers=headers(settings, Role.COORDINATOR, site))
    assert response.status_code == 201, response.text


async def links(client: httpx.AsyncClient, settings: Settings, site: str, of: str) -> httpx.Response:
    return await client.get(f"/api/clients/{of}/links", headers=headers(settings, Role.COORDINATOR, site))


@pytest.fixture
async def two_sites(app: FastAPI, client: httpx.AsyncClient, settings: Settings) -> tuple[str, str]:
    """The same person discharged at north and at south: two clients, one per site."""
    for site in ("north", "south"):
        await add_site(app.state.sessions, site, SiteSpec(name=f"{site} hospital"))
        await discharge_at(client, settings, site, fixture_json(DISCHARGE))
    north, south = await client_id(app, "north"), await client_id(app, "south")
    assert north != south
    return north, south


async def test_the_same_patient_id_at_two_sites_is_two_clients_not_shown_without_consent(
    client: httpx.AsyncClient, settings: Settings, two_sites: tuple[str, str]
) -> None:
    north, south = two_sites
    for site, own in (("north", north), ("south", south)):
        answer = await links(client, settings, site, own)
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"client_id": own, "identifier_system": SHARED, "links": []}


async def test_consent_at_the_other_site_shows_its_record_to_the_named_site_only(
    client: httpx.AsyncClient, settings: Settings, two_sites: tuple[str, str]
) -> None:
    north, south = two_sites
    await record(client, settings, "south", disclose_to(f"Patient/{south}", "Organization/north"))

    shown = (await links(client, settings, "north", north)).json()["links"]
    assert [(r["site"], r["client_id"], r["state"]) for r in shown] == [("south", south, "in-community")]
    # South's consent says nothing about north's record: south's coordinators still see nothing of north.
    assert (await links(client, settings, "south", south)).json()["links"] == []


async def test_a_consent_recorded_at_one_site_never_opens_the_other_sites_record(
    client: httpx.AsyncClient, settings: Settings, two_sites: tuple[str, str]
) -> None:
    north, south = two_sites
    # Recorded at north, about north's client: it may let south see north's stay, never north see south's.
    await record(client, settings, "north", disclose_to(f"Patient/{north}", "Organization/north"))
    assert (await links(client, settings, "north", north)).json()["links"] == []
    await record(client, settings, "north", disclose_to(f"Patient/{north}", "Organization/south"))
    shown = (await links(client, settings, "south", south)).json()["links"]
    assert [(r["site"], r["client_id"]) for r in shown] == [("north", north)]


async def test_every_link_answer_is_in_the_other_sites_accounting(
    client: httpx.AsyncClient, settings: Settings, two_sites: tuple[str, str]
) -> None:
    north, south = two_sites
    await links(client, settings, "north", north)  # refused: no consent at south
    await record(client, settings, "south", disclose_to(f"Patient/{south}", "Organization/north"))
    await links(client, settings, "north", north)  # shown

    accounting = await client.get(
        "/fhir/AuditEvent", params={"patient": f"Patient/{south}"}, headers=headers(settings, Role.COORDINATOR, "south")
    )
    assert accounting.status_code == 200, accounting.text
    events = [e["resource"] for e in accounting.json().get("entry", [])]
    asked = [e for e in events if e["agent"][0]["who"]["reference"] == "Organization/north"]
    assert [e["outcome"] for e in asked] == ["4", "0"]  # minor failure (withheld), then success


async def test_another_sites_client_is_not_found_like_a_missing_one(
    client: httpx.AsyncClient, settings: Settings, two_sites: tuple[str, str]
) -> None:
    _, south = two_sites
    theirs = await links(client, settings, "north", south)
    missing = await links(client, settings, "north", "no-such-client")
    assert theirs.status_code == missing.status_code == 404
    assert theirs.text.replace(south, "ID") == missing.text.replace("no-such-client", "ID")


async def test_a_different_person_with_the_same_patient_id_elsewhere_is_never_linked(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings
) -> None:
    await add_site(app.state.sessions, "north", SiteSpec())
    await add_site(app.state.sessions, "south", SiteSpec())
    await discharge_at(client, settings, "north", fixture_json(DISCHARGE))
    other = copy.deepcopy(fixture_json(DISCHARGE))
    for entry in other["entry"]:
        if entry["resource"]["resourceType"] == "Patient":
            for identifier in entry["resource"]["identifier"]:
                if identifier["system"] == SHARED:
                    identifier["value"] = "someone-else"
    await discharge_at(client, settings, "south", other)
    north, south = await client_id(app, "north"), await client_id(app, "south")
    await record(client, settings, "south", disclose_to(f"Patient/{south}", "Organization/north"))
    assert (await links(client, settings, "north", north)).json()["links"] == []


async def test_without_a_shared_identifier_system_records_are_never_linked(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings, two_sites: tuple[str, str]
) -> None:
    north, south = two_sites
    await record(client, settings, "south", disclose_to(f"Patient/{south}", "Organization/north"))
    app.state.settings = settings.model_copy(update={"link_identifier_system": None})
    answer = (await links(client, settings, "north", north)).json()
    assert answer == {"client_id": north, "identifier_system": None, "links": []}
