"""Two hospitals, two EHRs (two instances of the test EHR): site "north" at EHR A, site "south" at EHR B.

Every notification is attributed to the site whose credentials it carries, every id-only read goes to that
site's EHR, and every write-back lands on the client's own site's EHR only, in that site's write mode.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr

import fhir_profiles
from service.app import sites
from service.app.clock import utcnow
from service.app.sites import site_directory
from service.auth import Role
from service.settings import Settings
from service.store.db import transaction
from service.store.sites import PeerSite
from service.workers.intake import process_inbox
from service.workers.outbox import DeliveryReport, deliver_due
from tests.api.test_subscriptions import event_notification, notify, stay
from tests.conftest import fixture_json
from tests.integration.test_intake_ehr import hospital_stay
from tests.support.ehr import TestEhr
from tests.support.flow import DISCHARGE, peer_contact

pytestmark = pytest.mark.ehr
Auth = Callable[..., dict[str, str]]
METRICS_TOKEN = "scrape-token-0123456789"
PATIENT = "06e1f0dd-5fbe-4480-9bb4-6b54ec02d31b"  # the Da Vinci discharge example's Patient


@dataclass(frozen=True)
class Sites:
    north_secret: str
    south_secret: str


@pytest.fixture
def settings(settings: Settings, ehr: TestEhr) -> Settings:
    return settings.model_copy(update={"ehr_base_url": ehr.base_url, "metrics_token": SecretStr(METRICS_TOKEN)})


@pytest.fixture
async def two_sites(app: FastAPI, ehr: TestEhr, ehr_b: TestEhr) -> Sites:
    """north at EHR A (conditional create), south at EHR B (PUT)."""
    _, north = await sites.add_site(
        app.state.sessions,
        "north",
        sites.SiteSpec(name="North Hospital", fhir_base_url=ehr.base_url, write_mode="conditional-create"),
    )
    _, south = await sites.add_site(
        app.state.sessions, "south", sites.SiteSpec(name="South Hospital", fhir_base_url=ehr_b.base_url)
    )
    return Sites(north, south)


async def discharge_at(client: httpx.AsyncClient, auth: Auth, site: str) -> dict[str, Any]:
    """The Da Vinci discharge example, sent by the site's EHR (its ehr-system token); the site's episode."""
    response = await client.post(
        "/fhir/$process-message",
        content=json.dumps(fixture_json(DISCHARGE)),
        headers=auth(Role.EHR_SYSTEM, "hospital", site=site, **{"Content-Type": "application/fhir+json"}),
    )
    assert response.status_code == 200, response.text
    [episode] = await site_episodes(client, auth, site)
    return episode


async def site_episodes(client: httpx.AsyncClient, auth: Auth, site: str) -> list[dict[str, Any]]:
    response = await client.get("/api/episodes", headers=auth(Role.COORDINATOR, "coord", site=site))
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()
    return found


async def peer_with_contact(
    client: httpx.AsyncClient, auth: Auth, site: str, episode: dict[str, Any], name: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A peer of the site, assigned to the episode's client, who records one contact."""
    coordinator = auth(Role.COORDINATOR, "coord", site=site)
    peer = (await client.post("/api/peers", json={"name": name}, headers=coordinator)).json()
    assigned = await client.put(
        f"/api/episodes/{episode['id']}/peer", json={"peer_id": peer["id"]}, headers=coordinator
    )
    assert assigned.status_code == 200, assigned.text
    posted = await client.post(
        "/fhir/Encounter", json=peer_contact(episode["client_id"]), headers=auth(Role.PEER, peer["id"])
    )
    assert posted.status_code == 201, posted.text
    contact: dict[str, Any] = posted.json()
    return peer, contact


async def deliver(app: FastAPI, settings: Settings) -> DeliveryReport:
    """The outbox worker with each site's connection, until nothing is due."""
    directory = site_directory(app.state.sessions, settings, ttl=0)
    total = DeliveryReport()
    try:
        while (report := await deliver_due(app.state.sessions, directory, settings)).claimed:
            total = DeliveryReport(
                claimed=total.claimed + report.claimed,
                delivered=total.delivered + report.delivered,
                dead=total.dead + report.dead,
            )
    finally:
        await directory.aclose()
    return total


def writes(ehr: TestEhr) -> list[str]:
    return [f"{r['method']} {r['path'].split('?')[0]}" for r in ehr.requests() if r["method"] in ("POST", "PUT")]


def contact_identifier(contact_id: str) -> str:
    return f"{fhir_profiles.CONTACT_IDENTIFIER_SYSTEM}|{contact_id}"


async def test_write_backs_land_on_the_clients_own_ehr_only_in_its_write_mode(
    client: httpx.AsyncClient,
    auth: Auth,
    app: FastAPI,
    settings: Settings,
    ehr: TestEhr,
    ehr_b: TestEhr,
    two_sites: Sites,
) -> None:
    north = await discharge_at(client, auth, "north")
    south = await discharge_at(client, auth, "south")
    assert north["client_id"] != south["client_id"]  # the same Patient id at two sites is two clients
    _, north_contact = await peer_with_contact(client, auth, "north", north, "Alex North")
    _, south_contact = await peer_with_contact(client, auth, "south", south, "Sam South")

    report = await deliver(app, settings)
    assert (report.delivered, report.dead) == (4, 0)  # each site: one Encounter, one CareTeam

    [at_a] = ehr.search("Encounter", identifier=contact_identifier(north_contact["id"]))
    [at_b] = ehr_b.search("Encounter", identifier=contact_identifier(south_contact["id"]))
    assert at_a["subject"]["reference"] == at_b["subject"]["reference"] == f"Patient/{PATIENT}"
    assert ehr.search("Encounter", identifier=contact_identifier(south_contact["id"])) == []
    assert ehr_b.search("Encounter", identifier=contact_identifier(north_contact["id"])) == []
    assert (ehr.count("Encounter"), ehr_b.count("Encounter")) == (1, 1)
    assert (ehr.count("CareTeam"), ehr_b.count("CareTeam")) == (1, 1)
    assert (ehr.count("Practitioner"), ehr_b.count("Practitioner")) == (1, 1)
    [team_a], [team_b] = ehr.search("CareTeam"), ehr_b.search("CareTeam")
    assert [p["member"]["display"] for p in team_a["participant"]] == ["Alex North"]
    assert [p["member"]["display"] for p in team_b["participant"]] == ["Sam South"]

    # north writes by conditional create (POST with If-None-Exist), south by PUT with Peerway's ids.
    assert {w.split(" ")[0] for w in writes(ehr)} == {"POST"}
    assert "POST /fhir/Encounter" in writes(ehr)
    assert {w.split(" ")[0] for w in writes(ehr_b)} == {"PUT"}
    assert f"PUT /fhir/Encounter/{south_contact['id']}" in writes(ehr_b)


async def test_a_peer_enabled_at_both_sites_has_a_practitioner_at_each_ehr(
    client: httpx.AsyncClient,
    auth: Auth,
    app: FastAPI,
    settings: Settings,
    ehr: TestEhr,
    ehr_b: TestEhr,
    two_sites: Sites,
) -> None:
    north = await discharge_at(client, auth, "north")
    south = await discharge_at(client, auth, "south")
    peer, _ = await peer_with_contact(client, auth, "north", north, "Alex Both")
    async with transaction(app.state.sessions) as session:
        session.add(PeerSite(peer_id=peer["id"], site_id="south", enabled_at=utcnow()))
    assigned = await client.put(
        f"/api/episodes/{south['id']}/peer", json={"peer_id": peer["id"]}, headers=auth(Role.COORDINATOR, site="south")
    )
    assert assigned.status_code == 200, assigned.text
    posted = await client.post(
        "/fhir/Encounter", json=peer_contact(south["client_id"]), headers=auth(Role.PEER, peer["id"])
    )
    assert posted.status_code == 201, posted.text

    assert (await deliver(app, settings)).dead == 0
    identifier = f"{fhir_profiles.PEER_IDENTIFIER_SYSTEM}|{peer['id']}"
    [at_a], [at_b] = (
        ehr.search("Practitioner", identifier=identifier),
        ehr_b.search("Practitioner", identifier=identifier),
    )
    [encounter_a], [encounter_b] = ehr.search("Encounter"), ehr_b.search("Encounter")
    # Each Encounter names the Practitioner of its own EHR (north's by the id EHR A gave it).
    assert any(p["individual"]["reference"] == f"Practitioner/{at_a['id']}" for p in encounter_a["participant"])
    assert any(p["individual"]["reference"] == f"Practitioner/{at_b['id']}" for p in encounter_b["participant"])


async def test_a_notification_with_norths_credentials_naming_a_southern_patient_is_norths(
    client: httpx.AsyncClient, auth: Auth, app: FastAPI, ehr: TestEhr, ehr_b: TestEhr, two_sites: Sites
) -> None:
    south = await discharge_at(client, auth, "south")
    encounter = stay("stay-n", "finished", patient_id=PATIENT, start=utcnow(), end=utcnow())
    sent = await notify(
        client, auth, event_notification(1, encounter), headers={"X-Peerway-Channel": two_sites.north_secret}
    )
    assert sent.status_code == 200, sent.text
    [north] = await site_episodes(client, auth, "north")
    assert north["client_id"] != south["client_id"]
    assert await site_episodes(client, auth, "south") == [south]  # south's client and stay untouched
    # Nor can a coordinator of one site reach the other's client or episode.
    other = await client.get(f"/api/episodes/{south['id']}", headers=auth(Role.COORDINATOR, site="north"))
    missing = await client.get("/api/episodes/no-such-episode", headers=auth(Role.COORDINATOR, site="north"))
    assert other.status_code == missing.status_code == 404


async def test_an_id_only_notification_is_read_from_the_senders_ehr_only(
    client: httpx.AsyncClient,
    auth: Auth,
    app: FastAPI,
    settings: Settings,
    ehr: TestEhr,
    ehr_b: TestEhr,
    two_sites: Sites,
) -> None:
    start = utcnow()
    hospital_stay(ehr_b, "stay-s", "patient-s", "in-progress", start)
    hospital_stay(ehr, "stay-s", "patient-s", "in-progress", start)  # EHR A holds the same ids: never asked
    before_a = len(ehr.requests())
    note = event_notification(1, stay("stay-s", patient_id="patient-s"), payload="id-only")
    sent = await notify(client, auth, note, headers={"X-Peerway-Channel": two_sites.south_secret})
    assert sent.status_code == 200, sent.text

    directory = site_directory(app.state.sessions, settings)
    try:
        report = await process_inbox(app.state.sessions, directory, settings)
    finally:
        await directory.aclose()
    assert (report.done, report.dead) == (1, 0)
    reads_b = [f"{r['method']} {r['path']}" for r in ehr_b.requests() if r["method"] == "GET"]
    assert reads_b == ["GET /fhir/Encounter/stay-s", "GET /fhir/Patient/patient-s"]
    assert [r for r in ehr.requests()[before_a:] if r["method"] == "GET"] == []
    [episode] = await site_episodes(client, auth, "south")
    assert episode["state"] == "on-ward"
    assert await site_episodes(client, auth, "north") == []


async def test_a_disabled_site_or_a_rotated_secret_is_refused(
    client: httpx.AsyncClient, auth: Auth, app: FastAPI, two_sites: Sites
) -> None:
    note = event_notification(1, stay("stay-x", "finished", start=utcnow(), end=utcnow()))
    new_south = await sites.rotate_secret(app.state.sessions, "south")
    old = await notify(client, auth, note, headers={"X-Peerway-Channel": two_sites.south_secret})
    assert old.status_code == 401
    assert (await notify(client, auth, note, headers={"X-Peerway-Channel": new_south})).status_code == 200

    await sites.update_site(app.state.sessions, "north", sites.SiteSpec(status="disabled"))
    by_secret = await notify(client, auth, note, headers={"X-Peerway-Channel": two_sites.north_secret})
    assert by_secret.status_code == 401
    by_token = await notify(client, auth, note, headers=auth(Role.EHR_SYSTEM, "hospital", site="north"))
    assert by_token.status_code == 403
    da_vinci = await client.post(
        "/fhir/$process-message",
        content=json.dumps(fixture_json(DISCHARGE)),
        headers=auth(Role.EHR_SYSTEM, "hospital", site="north", **{"Content-Type": "application/fhir+json"}),
    )
    assert da_vinci.status_code == 403
    unknown = await notify(client, auth, note, headers=auth(Role.EHR_SYSTEM, "hospital", site="nowhere"))
    assert unknown.status_code == 403
    assert await site_episodes(client, auth, "north") == []


async def test_dead_letters_and_metrics_are_per_site(
    client: httpx.AsyncClient,
    auth: Auth,
    app: FastAPI,
    settings: Settings,
    ehr: TestEhr,
    ehr_b: TestEhr,
    two_sites: Sites,
) -> None:
    north = await discharge_at(client, auth, "north")
    south = await discharge_at(client, auth, "south")
    await peer_with_contact(client, auth, "north", north, "Alex North")
    await peer_with_contact(client, auth, "south", south, "Sam South")
    ehr_b.fault(status=422, count=10)  # EHR B refuses every write for good
    report = await deliver(app, settings)
    assert (report.delivered, report.dead) == (2, 2)

    north_coordinator, south_coordinator = auth(Role.COORDINATOR, site="north"), auth(Role.COORDINATOR, site="south")
    assert (await client.get("/api/outbox/dead", headers=north_coordinator)).json() == []
    dead = (await client.get("/api/outbox/dead", headers=south_coordinator)).json()
    assert len(dead) == 2
    row = next(letter["id"] for letter in dead if letter["kind"] == "careteam")
    for method, path in (("POST", f"/api/outbox/{row}/replay"), ("DELETE", f"/api/outbox/{row}")):
        theirs = await client.request(method, path, headers=north_coordinator)
        nothing = await client.request(method, path.replace(str(row), "999999"), headers=north_coordinator)
        assert theirs.status_code == nothing.status_code == 404
        assert theirs.json()["issue"][0]["diagnostics"] == nothing.json()["issue"][0]["diagnostics"].replace(
            "999999", str(row)
        )
    assert (await client.post(f"/api/outbox/{row}/replay", headers=south_coordinator)).status_code == 200

    response = await client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    figures = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in response.text.splitlines()
        if line and not line.startswith("#")
    }
    assert figures['peerway_outbox_rows{kind="contact",site="north",status="done"}'] == 1
    assert figures['peerway_outbox_rows{kind="careteam",site="south",status="pending"}'] == 1  # replayed
    assert figures['peerway_outbox_rows{kind="contact",site="south",status="dead"}'] == 1
    for identifying in (north["id"], south["client_id"], PATIENT):
        assert identifying not in response.text


async def test_a_changed_site_connection_takes_effect_without_a_restart(
    client: httpx.AsyncClient,
    auth: Auth,
    app: FastAPI,
    settings: Settings,
    ehr: TestEhr,
    ehr_b: TestEhr,
    two_sites: Sites,
) -> None:
    north = await discharge_at(client, auth, "north")
    directory = site_directory(app.state.sessions, settings, ttl=0)
    try:
        assert (await directory.client("north")) is (await directory.client("north"))  # kept while unchanged
        await peer_with_contact(client, auth, "north", north, "Alex North")
        await sites.update_site(
            app.state.sessions, "north", sites.SiteSpec(fhir_base_url=ehr_b.base_url, write_mode="put")
        )
        while (await deliver_due(app.state.sessions, directory, settings)).claimed:
            pass
        assert (await directory.connection("north")).fhir_base_url == ehr_b.base_url
    finally:
        await directory.aclose()
    assert (ehr.count("Encounter"), ehr_b.count("Encounter")) == (0, 1)
    assert {w.split(" ")[0] for w in writes(ehr_b)} == {"PUT"}


async def test_each_site_is_spoken_to_in_its_fhir_version_and_an_r5_site_gets_no_r4_write(
    app: FastAPI, client: httpx.AsyncClient, auth: Auth, settings: Settings, ehr: TestEhr, ehr_b: TestEhr
) -> None:
    await sites.add_site(app.state.sessions, "north", sites.SiteSpec(fhir_base_url=ehr.base_url, fhir_version="4.3.0"))
    await sites.add_site(
        app.state.sessions, "south", sites.SiteSpec(fhir_base_url=ehr_b.base_url, fhir_version="5.0.0")
    )
    for site, name in (("north", "Nora North"), ("south", "Sam South")):
        await peer_with_contact(client, auth, site, await discharge_at(client, auth, site), name)

    report = await deliver(app, settings)

    # R4B: our R4 resources, announced as such to an EHR that reads 4.3.
    assert report.delivered == 2  # north's CareTeam and Encounter rows (each writes the Practitioner first)
    north_writes = [r for r in ehr.requests() if r["method"] in ("POST", "PUT")]
    assert north_writes
    assert {r["contentType"] for r in north_writes} == {"application/fhir+json; fhirVersion=4.3"}
    # R5 reshaped Encounter and CareTeam: nothing is sent, and the dead letters say why.
    assert writes(ehr_b) == []
    assert report.dead == 2
    dead = await client.get("/api/outbox/dead", headers=auth(Role.COORDINATOR, "coord", site="south"))
    assert dead.status_code == 200, dead.text
    assert {row["error"] for row in dead.json()} == {"write-back speaks FHIR R4 (4.0.1); this EHR speaks 5.0.0"}


async def test_a_site_without_a_base_url_never_writes_to_the_default_sites_ehr(
    app: FastAPI, client: httpx.AsyncClient, auth: Auth, settings: Settings, ehr: TestEhr
) -> None:
    """`ehr` is the default site's EHR (PEERWAY_EHR_BASE_URL); east was registered without an EHR of its own."""
    await sites.add_site(app.state.sessions, "east", sites.SiteSpec(name="East General"))
    await peer_with_contact(client, auth, "east", await discharge_at(client, auth, "east"), "Eve East")

    report = await deliver(app, settings)

    assert (report.claimed, report.delivered, report.dead) == (2, 0, 0)  # both rows wait, retrying
    assert writes(ehr) == []
    dead_or_waiting = await client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert 'peerway_outbox_rows{kind="contact",site="east",status="pending"} 1.0' in dead_or_waiting.text
