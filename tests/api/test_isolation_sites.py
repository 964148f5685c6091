"""Two hospitals ("north", "south") and two peer organizations ("alpha", "beta"): every coordinator route is held
to the caller's site, every list and feed to its own items, and an organization's coordinator to its own peers.

The same person (same EHR Patient id, same shared identifier) is a client at both sites. Every route that names a
south resource is asked by north's coordinator and must answer exactly what it answers for an id that does not
exist. A new route is one more line in ROUTES.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

import fhir_profiles
from service.app import notifications
from service.app.sites import SiteSpec, add_organization, add_site, update_site
from service.auth import Role
from service.settings import Settings
from service.store.db import SessionFactory
from tests.api.test_notifications import new_stay
from tests.api.test_subscriptions import HANDSHAKE, instant, notify
from tests.conftest import fixture_json
from tests.support.consents import peer_consent
from tests.support.flow import ADMIT, DISCHARGE

Auth = Callable[..., dict[str, str]]
SHARED = "http://example.org/fhir/pid"  # the Da Vinci examples' patient identifier stands in for a health number
HELD = ["preferred-name", "contact-details", "admission-discharge"]


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"notification_feed_overlap_seconds": 0.0, "link_identifier_system": SHARED})


@dataclass
class World:
    """What each side holds: the site's current episode and client, its peers, a consent."""

    episode: dict[str, str]  # site -> current episode id
    client: dict[str, str]  # site -> client id
    first_episode: dict[str, str]  # site -> the discharged first stay
    peer: dict[str, str]  # N (north, default org), S (south, default org), A (alpha: north+south), B (beta: south)
    consent: dict[str, str]  # site -> a consent id of the site's client


def coordinator(auth: Auth, site: str) -> dict[str, str]:
    return auth(Role.COORDINATOR, f"coord-{site}", site=site)


def org(auth: Auth, organization: str) -> dict[str, str]:
    return auth(Role.ORGANIZATION_COORDINATOR, f"org-{organization}", org=organization)


async def process(client: httpx.AsyncClient, auth: Auth, site: str, bundle: dict[str, Any]) -> None:
    headers = auth(Role.EHR_SYSTEM, f"ehr-{site}", site=site, **{"Content-Type": "application/fhir+json"})
    response = await client.post("/fhir/$process-message", content=json.dumps(bundle), headers=headers)
    assert response.status_code == 200, response.text


async def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json() if response.content else None


async def build_world(app: FastAPI, client: httpx.AsyncClient, auth: Auth, *, south_consent: bool = True) -> World:
    sessions: SessionFactory = app.state.sessions
    for site in ("north", "south"):
        await add_site(sessions, site, SiteSpec(name=f"{site.title()} Hospital"))
    for organization in ("alpha", "beta"):
        await add_organization(sessions, organization, f"{organization.title()} Peers")
    expected = datetime.now(UTC).replace(microsecond=0) + timedelta(days=3)
    future = {"start": instant(expected - timedelta(days=1)), "end": instant(expected)}
    world = World({}, {}, {}, {}, {})
    for site in ("north", "south"):
        # Each site's EHR opens its Subscription channel (the same Subscription URL at both).
        handshake = await notify(client, auth, fixture_json(HANDSHAKE), auth(Role.EHR_SYSTEM, "ehr", site=site))
        await ok(handshake)
        # The very same Da Vinci messages at both sites: same Patient id, same shared identifier.
        await process(client, auth, site, new_stay(ADMIT, "first-stay"))
        await process(client, auth, site, new_stay(DISCHARGE, "first-stay"))
        first = (await ok(await client.get("/api/episodes", headers=coordinator(auth, site))))[-1]
        world.first_episode[site] = first["id"]
        world.client[site] = first["client_id"]
    for key, site in (("N", "north"), ("S", "south")):
        posted = await client.post("/api/peers", json={"name": f"Peer {key}"}, headers=coordinator(auth, site))
        world.peer[key] = (await ok(posted, 201))["id"]
    for key, organization, sites in (("A", "alpha", ["north", "south"]), ("B", "beta", ["south"])):
        posted = await client.post(
            "/api/org/peers", json={"name": f"Peer {key}", "sites": sites}, headers=org(auth, organization)
        )
        world.peer[key] = (await ok(posted, 201))["id"]
    for site, key in (("north", "N"), ("south", "A")):
        assigned = await client.put(
            f"/api/episodes/{world.first_episode[site]}/peer",
            json={"peer_id": world.peer[key]},
            headers=coordinator(auth, site),
        )
        await ok(assigned)
        # A readmission (the peer carries over) that the EHR expects to end in three days.
        await process(client, auth, site, new_stay(ADMIT, "second-stay", period=future))
        listed = await ok(await client.get("/api/episodes", headers=coordinator(auth, site)))
        world.episode[site] = listed[-1]["id"]
    for site in ("north", "south") if south_consent else ("north",):
        consent = peer_consent(f"Patient/{world.client[site]}", HELD)
        posted = await client.post("/fhir/Consent", json=consent, headers=coordinator(auth, site))
        world.consent[site] = (await ok(posted, 201))["id"]
    for site, key in (("north", "N"), ("south", "A")):  # each site's peer reads once: an AuditEvent at each site
        await ok(
            await client.get(
                f"/fhir/Patient/{world.client[site]}/$peer-summary", headers=auth(Role.PEER, world.peer[key])
            )
        )
    return world


@pytest.fixture
async def world(app: FastAPI, client: httpx.AsyncClient, auth: Auth) -> World:
    return await build_world(app, client, auth)


# --- every route naming another site's resource answers as for a missing one ----------------------------------


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # {id} is the resource asked for
    kind: str  # episode | client | consent | peer: which south resource stands in for {id}
    body: Callable[[World, str], Any] | None = None  # (world, id) -> JSON body


def _consult(world: World, ident: str) -> dict[str, Any]:
    """South's assigned peer (A) asks about the client: south's consent permits it, north knows no such client."""
    return {
        "hook": "patient-consent-consult",
        "hookInstance": "h1",
        "context": {
            "patientId": {"value": ident},
            "actor": {"system": fhir_profiles.PEER_IDENTIFIER_SYSTEM, "value": world.peer["A"]},
            "category": [{"system": "x", "code": "patient-privacy"}],
        },
    }


ROUTES = [
    Route("GET", "/api/episodes/{id}", "episode"),
    Route("PUT", "/api/episodes/{id}/peer", "episode", lambda w, _: {"peer_id": w.peer["N"]}),
    Route("PUT", "/api/episodes/{id}/preferences", "episode", lambda w, _: {"languages": ["en"]}),
    Route("GET", "/api/episodes/{id}/preferences", "episode"),
    Route("GET", "/api/episodes/{id}/suggestions", "episode"),
    Route("POST", "/api/episodes/{id}/confirm", "episode", lambda w, _: {"peer_id": w.peer["N"]}),
    Route("POST", "/api/episodes/{id}/rematch", "episode", lambda w, _: {"requested_by": "client", "reason": "other"}),
    Route("POST", "/api/episodes/{id}/end", "episode", lambda w, _: {"reason": "completed"}),
    Route("GET", "/api/episodes/{id}/history", "episode"),
    Route("GET", "/api/clients/{id}/sharing", "client"),
    Route("GET", "/api/clients/{id}/sharing?peer_id=x", "client"),
    Route("GET", "/fhir/Consent?patient=Patient/{id}", "client"),
    Route("GET", "/fhir/AuditEvent?patient=Patient/{id}", "client"),
    Route("POST", "/fhir/Consent", "client", lambda w, i: peer_consent(f"Patient/{i}", HELD)),
    Route("PUT", "/fhir/Consent/k-{id}", "client", lambda w, i: peer_consent(f"Patient/{i}", HELD) | {"id": f"k-{i}"}),
    Route("POST", "/cds-services/patient-consent-consult", "client", _consult),
    Route("GET", "/fhir/Consent/{id}", "consent"),
    Route(
        "PUT",
        "/fhir/Consent/{id}",
        "consent",
        lambda w, i: peer_consent(f"Patient/{w.client['south']}", HELD) | {"id": i},
    ),
    Route("GET", "/api/peers/{id}/profile", "peer"),
    Route("PUT", "/api/peers/{id}/profile", "peer", lambda w, _: {"name": "Renamed"}),
    Route("PUT", "/api/peers/{id}/status", "peer", lambda w, _: {"status": "paused"}),
    Route("GET", "/fhir/Practitioner/{id}", "peer"),
    Route("GET", "/fhir/PractitionerRole/{id}", "peer"),
]


def _south(world: World, kind: str) -> str:
    return {
        "episode": world.episode["south"],
        "client": world.client["south"],
        "consent": world.consent["south"],
        "peer": world.peer["B"],  # beta's peer, enabled at south only
    }[kind]


async def _ask(client: httpx.AsyncClient, headers: dict[str, str], route: Route, world: World, ident: str) -> Any:
    body = route.body(world, ident) if route.body else None
    response = await client.request(route.method, route.path.format(id=ident), json=body, headers=headers)
    return response.status_code, response.text.replace(ident, "<id>")


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.method} {r.path}")
async def test_another_sites_resource_is_answered_as_a_missing_one(
    client: httpx.AsyncClient, auth: Auth, world: World, route: Route
) -> None:
    north = coordinator(auth, "north")
    theirs = await _ask(client, north, route, world, _south(world, route.kind))
    missing = await _ask(client, north, route, world, str(uuid.uuid4()))
    assert theirs == missing
    assert theirs[0] in (200, 404, 422)  # a search finds nothing, a read is not found, a write names no client
    # ... and south's own coordinator does reach it (the route is not simply refusing everyone).
    south = coordinator(auth, "south")
    assert (await _ask(client, south, route, world, _south(world, route.kind))) != missing


async def test_nothing_of_south_changed_through_north(client: httpx.AsyncClient, auth: Auth, world: World) -> None:
    before = await _south_state(client, auth, world)
    north = coordinator(auth, "north")
    for route in ROUTES:
        if route.method != "GET":
            await _ask(client, north, route, world, _south(world, route.kind))
    assert await _south_state(client, auth, world) == before


async def _south_state(client: httpx.AsyncClient, auth: Auth, world: World) -> Any:
    south = coordinator(auth, "south")
    paths = [
        f"/api/episodes/{world.episode['south']}",
        f"/api/episodes/{world.episode['south']}/preferences",
        f"/api/episodes/{world.episode['south']}/history",
        f"/fhir/Consent?patient=Patient/{world.client['south']}",
        f"/api/peers/{world.peer['B']}/profile",
    ]
    return [(await client.get(p, headers=south)).text for p in paths]


# --- lists and feeds hold only the site's own items -----------------------------------------------------------


async def test_lists_and_feeds_hold_only_the_sites_own_items(
    client: httpx.AsyncClient, auth: Auth, world: World
) -> None:
    for site, other in (("north", "south"), ("south", "north")):
        headers = coordinator(auth, site)
        episodes = await ok(await client.get("/api/episodes", headers=headers))
        assert {e["client_id"] for e in episodes} == {world.client[site]}
        assert {e["id"] for e in episodes} == {world.first_episode[site], world.episode[site]}
        feed = await ok(await client.get("/api/notifications", headers=headers))
        assert [(n["event"], n["client_id"]) for n in feed["notifications"]] == [("readmitted", world.client[site])]
        upcoming = await ok(await client.get("/api/discharges/upcoming", headers=headers))
        assert [u["episode_id"] for u in upcoming] == [world.episode[site]]
        consents = await ok(await client.get(f"/fhir/Consent?patient=Patient/{world.client[other]}", headers=headers))
        assert consents["total"] == 0
    peers_north = await ok(await client.get("/api/peers", headers=coordinator(auth, "north")))
    assert {p["id"] for p in peers_north} == {world.peer["N"], world.peer["A"]}
    peers_south = await ok(await client.get("/api/peers", headers=coordinator(auth, "south")))
    assert {p["id"] for p in peers_south} == {world.peer["S"], world.peer["A"], world.peer["B"]}


async def test_the_same_ehr_patient_id_names_each_sites_own_client(
    client: httpx.AsyncClient, auth: Auth, world: World
) -> None:
    """Searching by the EHR's Patient id finds the caller's site's client, never the other's."""
    ehr_patient = "06e1f0dd-5fbe-4480-9bb4-6b54ec02d31b"
    for site in ("north", "south"):
        found = await ok(await client.get(f"/fhir/Consent?patient={ehr_patient}", headers=coordinator(auth, site)))
        assert [e["resource"]["id"] for e in found["entry"]] == [world.consent[site]]
        assert found["entry"][0]["resource"]["patient"]["reference"] == f"Patient/{world.client[site]}"


async def test_caseloads_show_only_the_sites_clients_and_count_every_site_for_free_places(
    client: httpx.AsyncClient, auth: Auth, world: World
) -> None:
    north = {c["peer_id"]: c for c in await ok(await client.get("/api/caseloads", headers=coordinator(auth, "north")))}
    assert set(north) == {world.peer["N"], world.peer["A"]}
    assert [x["client_id"] for x in north[world.peer["N"]]["clients"]] == [world.client["north"]]
    assert north[world.peer["A"]]["clients"] == []  # A's client is at south: not shown to north
    assert north[world.peer["A"]]["free_places"] == north[world.peer["A"]]["caseload_cap"] - 1
    south = {c["peer_id"]: c for c in await ok(await client.get("/api/caseloads", headers=coordinator(auth, "south")))}
    assert set(south) == {world.peer["S"], world.peer["A"], world.peer["B"]}
    assert {x["client_id"] for x in south[world.peer["A"]]["clients"]} == {world.client["south"]}


async def test_channel_health_of_a_site_holds_only_its_own_channels(
    app: FastAPI, client: httpx.AsyncClient, auth: Auth, settings: Settings, world: World
) -> None:
    for site in ("north", "south"):
        channels = await ok(await client.get("/api/channels", headers=coordinator(auth, site)))
        assert [c["site"] for c in channels] == [site]
    assert len(await notifications.channel_health(app.state.sessions, settings)) == 2  # an operator sees all


# --- matching uses only the peers enabled at the episode's site -----------------------------------------------


async def test_a_peer_not_enabled_at_the_site_is_neither_suggested_nor_assignable(
    client: httpx.AsyncClient, auth: Auth, world: World
) -> None:
    north = coordinator(auth, "north")
    episode = world.episode["north"]
    await ok(
        await client.post(
            f"/api/episodes/{episode}/rematch", json={"requested_by": "client", "reason": "other"}, headers=north
        )
    )
    ranking = await ok(await client.get(f"/api/episodes/{episode}/suggestions", headers=north))
    seen = {s["peer_id"] for s in ranking["suggestions"]} | {e["peer_id"] for e in ranking["excluded"]}
    assert seen <= {world.peer["N"], world.peer["A"]}
    assert world.peer["A"] in seen
    for peer in (world.peer["S"], world.peer["B"]):
        for path in (f"/api/episodes/{episode}/peer", f"/api/episodes/{episode}/confirm"):
            method = "PUT" if path.endswith("/peer") else "POST"
            refused = await client.request(method, path, json={"peer_id": peer}, headers=north)
            assert refused.status_code == 422, refused.text
            assert peer in refused.text
            assert "peer_id" in refused.text
    # alpha takes A off north: north no longer sees, suggests or lists A.
    await ok(await client.delete(f"/api/org/peers/{world.peer['A']}/sites/north", headers=org(auth, "alpha")))
    ranking = await ok(await client.get(f"/api/episodes/{episode}/suggestions", headers=north))
    assert world.peer["A"] not in {s["peer_id"] for s in ranking["suggestions"]}
    assert world.peer["A"] not in {p["id"] for p in await ok(await client.get("/api/peers", headers=north))}
    refused = await client.put(f"/api/episodes/{episode}/peer", json={"peer_id": world.peer["A"]}, headers=north)
    assert refused.status_code == 422
    await ok(await client.put(f"/api/org/peers/{world.peer['A']}/sites/north", headers=org(auth, "alpha")))
    await ok(await client.post(f"/api/episodes/{episode}/confirm", json={"peer_id": world.peer["A"]}, headers=north))


# --- organization coordinators: their own peers, nothing else -------------------------------------------------


async def test_an_organization_coordinator_sees_and_manages_its_own_peers_only(
    client: httpx.AsyncClient, auth: Auth, world: World
) -> None:
    alpha, beta = org(auth, "alpha"), org(auth, "beta")
    assert [(p["id"], p["sites"]) for p in await ok(await client.get("/api/org/peers", headers=alpha))] == [
        (world.peer["A"], ["north", "south"])
    ]
    [load] = await ok(await client.get("/api/org/caseloads", headers=alpha))
    assert load["peer_id"] == world.peer["A"]
    assert [(c["client_id"], c["site"]) for c in load["clients"]] == [(world.client["south"], "south")]
    assert set(load["clients"][0]) == {"client_id", "site", "minutes_last_7_days", "below_weekly_minimum"}
    [beta_load] = await ok(await client.get("/api/org/caseloads", headers=beta))
    assert (beta_load["peer_id"], beta_load["clients"]) == (world.peer["B"], [])

    profile = await ok(
        await client.put(f"/api/org/peers/{world.peer['A']}/profile", json={"languages": ["fr"]}, headers=alpha)
    )
    assert profile["languages"] == ["fr"]
    paused = await ok(
        await client.put(f"/api/org/peers/{world.peer['A']}/status", json={"status": "paused"}, headers=alpha)
    )
    assert paused == {"status": "paused"}
    await ok(await client.put(f"/api/org/peers/{world.peer['A']}/status", json={"status": "active"}, headers=alpha))

    # Another organization's peer (or a site's own peer) is answered as a missing one.
    org_routes = [
        ("GET", "/api/org/peers/{id}/profile", None),
        ("PUT", "/api/org/peers/{id}/profile", {"name": "X"}),
        ("PUT", "/api/org/peers/{id}/status", {"status": "paused"}),
        ("PUT", "/api/org/peers/{id}/sites/north", None),
        ("DELETE", "/api/org/peers/{id}/sites/south", None),
    ]
    for method, path, body in org_routes:
        for theirs in (world.peer["B"], world.peer["N"]):
            missing = str(uuid.uuid4())
            asked = await client.request(method, path.format(id=theirs), json=body, headers=alpha)
            nothing = await client.request(method, path.format(id=missing), json=body, headers=alpha)
            assert asked.status_code == nothing.status_code == 404
            assert asked.text.replace(theirs, "<id>") == nothing.text.replace(missing, "<id>")
    assert [p["sites"] for p in await ok(await client.get("/api/org/peers", headers=beta))] == [["south"]]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/episodes"),
        ("GET", "/api/peers"),
        ("GET", "/api/caseloads"),
        ("GET", "/api/notifications"),
        ("GET", "/api/discharges/upcoming"),
        ("GET", "/api/channels"),
        ("GET", "/fhir/Consent?patient=x"),
        ("GET", "/fhir/AuditEvent?patient=x"),
        ("POST", "/cds-services/patient-consent-consult"),
        ("GET", "/api/me/clients"),
    ],
)
async def test_an_organization_coordinator_reaches_no_site_route(
    client: httpx.AsyncClient, auth: Auth, method: str, path: str
) -> None:
    response = await client.request(method, path, json={}, headers=org(auth, "alpha"))
    assert response.status_code == 403, response.text


async def test_a_site_coordinator_reaches_no_organization_route(client: httpx.AsyncClient, auth: Auth) -> None:
    for method, path in (("GET", "/api/org/peers"), ("GET", "/api/org/caseloads"), ("POST", "/api/org/peers")):
        response = await client.request(method, path, json={"name": "x"}, headers=auth(Role.COORDINATOR, "c"))
        assert response.status_code == 403, response.text


async def test_an_organization_registers_peers_only_at_registered_sites(
    app: FastAPI, client: httpx.AsyncClient, auth: Auth
) -> None:
    await add_organization(app.state.sessions, "alpha", "Alpha")
    refused = await client.post("/api/org/peers", json={"name": "P", "sites": ["nowhere"]}, headers=org(auth, "alpha"))
    assert refused.status_code == 422
    assert "sites" in refused.text
    assert await ok(await client.get("/api/org/peers", headers=org(auth, "alpha"))) == []


# --- consent is per client and per site -----------------------------------------------------------------------


async def test_a_permit_at_north_opens_nothing_at_south_for_the_same_person(
    app: FastAPI, client: httpx.AsyncClient, auth: Auth
) -> None:
    world = await build_world(app, client, auth, south_consent=False)
    # Peer A is south's client's peer. North's permit (for whichever peer is assigned) names the same person by
    # north's client id; it must not let A see anything of south's record.
    south_peer = auth(Role.PEER, world.peer["A"])
    summary = await ok(await client.get(f"/fhir/Patient/{world.client['south']}/$peer-summary", headers=south_peer))
    assert summary.get("entry", []) == []
    # North's own peer does see north's record under north's permit.
    north_peer = auth(Role.PEER, world.peer["N"])
    shown = await ok(await client.get(f"/fhir/Patient/{world.client['north']}/$peer-summary", headers=north_peer))
    assert len(shown["entry"]) >= 1
    # South's explanation names no consent at all.
    explained = await ok(
        await client.get(f"/api/clients/{world.client['south']}/sharing", headers=coordinator(auth, "south"))
    )
    assert not any(c["shared"] for c in explained["categories"])
    assert {c["consent"] for c in explained["categories"]} == {None}


async def test_an_ehr_cannot_record_a_consent_for_another_sites_client(
    client: httpx.AsyncClient, auth: Auth, world: World
) -> None:
    north_ehr = auth(Role.EHR_SYSTEM, "ehr-north", site="north")
    south = coordinator(auth, "south")
    before = await ok(await client.get(f"/fhir/Consent?patient=Patient/{world.client['south']}", headers=south))
    consent = peer_consent(f"Patient/{world.client['south']}", HELD)
    posted = await client.post("/fhir/Consent", json=consent, headers=north_ehr)
    assert posted.status_code in (404, 422), posted.text
    put = await client.put(
        f"/fhir/Consent/{world.consent['south']}", json=consent | {"id": world.consent["south"]}, headers=north_ehr
    )
    assert put.status_code in (404, 422), put.text
    after = await ok(await client.get(f"/fhir/Consent?patient=Patient/{world.client['south']}", headers=south))
    assert after == before
    north_consents = await ok(
        await client.get(f"/fhir/Consent?patient=Patient/{world.client['north']}", headers=coordinator(auth, "north"))
    )
    assert north_consents["total"] == 1


async def test_an_unregistered_site_or_organization_registers_no_peer(client: httpx.AsyncClient, auth: Auth) -> None:
    as_site = auth(Role.COORDINATOR, "c", site="nowhere")
    assert (await client.post("/api/peers", json={"name": "P"}, headers=as_site)).status_code == 403
    assert (await client.post("/api/org/peers", json={"name": "P"}, headers=org(auth, "nobody"))).status_code == 403
    assert await ok(await client.get("/api/peers", headers=auth(Role.COORDINATOR, "c"))) == []


async def test_consent_ids_are_each_sites_own(client: httpx.AsyncClient, auth: Auth, world: World) -> None:
    """Another site's Consent id is, to north, an unused id: PUT creates north's own, south's stays as it was."""
    north, south = coordinator(auth, "north"), coordinator(auth, "south")
    theirs = world.consent["south"]
    before = await ok(await client.get(f"/fhir/Consent/{theirs}", headers=south))
    mine = peer_consent(f"Patient/{world.client['north']}", HELD)
    created = await client.put(f"/fhir/Consent/{theirs}", json=mine | {"id": theirs}, headers=north)
    fresh_id = f"fresh-{uuid.uuid4()}"
    fresh = await client.put(f"/fhir/Consent/{fresh_id}", json=mine | {"id": fresh_id}, headers=north)
    assert created.status_code == fresh.status_code == 201, created.text
    assert (await ok(await client.get(f"/fhir/Consent/{theirs}", headers=north)))["patient"] == mine["patient"]
    assert await ok(await client.get(f"/fhir/Consent/{theirs}", headers=south)) == before
    # An id an EHR chose at one site never blocks the other site's EHR.
    for site in ("north", "south"):
        ehr = auth(Role.EHR_SYSTEM, f"ehr-{site}", site=site)
        consent = peer_consent(f"Patient/{world.client[site]}", HELD) | {"id": "ehr-consent-42"}
        put = await client.put("/fhir/Consent/ehr-consent-42", json=consent, headers=ehr)
        assert put.status_code == 201, put.text


async def test_only_a_peers_own_organization_changes_its_profile_or_status(
    client: httpx.AsyncClient, auth: Auth, world: World
) -> None:
    """Peer A (alpha) serves north and south: north's coordinator may read A's profile but not rewrite it."""
    north = coordinator(auth, "north")
    peer = world.peer["A"]
    profile = await ok(await client.get(f"/api/peers/{peer}/profile", headers=north))
    renamed = await client.put(f"/api/peers/{peer}/profile", json={**profile, "name": "Renamed"}, headers=north)
    paused = await client.put(f"/api/peers/{peer}/status", json={"status": "inactive"}, headers=north)
    assert renamed.status_code == paused.status_code == 403, renamed.text
    assert "alpha" in renamed.json()["issue"][0]["diagnostics"]
    assert await ok(await client.get(f"/api/org/peers/{peer}/profile", headers=org(auth, "alpha"))) == profile
    # The site's own (organization default) peer stays the site coordinator's to keep.
    own = await client.put(f"/api/peers/{world.peer['N']}/status", json={"status": "paused"}, headers=north)
    assert own.status_code == 200, own.text


async def test_a_disabled_sites_ehr_records_no_consent_and_asks_nothing(
    app: FastAPI, client: httpx.AsyncClient, auth: Auth, world: World
) -> None:
    await update_site(app.state.sessions, "north", SiteSpec(status="disabled"))
    ehr = auth(Role.EHR_SYSTEM, "ehr-north", site="north")
    consent = peer_consent(f"Patient/{world.client['north']}", HELD)
    assert (await client.post("/fhir/Consent", json=consent, headers=ehr)).status_code == 403
    assert (await client.put("/fhir/Consent/k-1", json=consent, headers=ehr)).status_code == 403
    asked = await client.post("/cds-services/patient-consent-consult", json={}, headers=ehr)
    assert asked.status_code == 403, asked.text
