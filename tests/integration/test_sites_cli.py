"""`peerway site`, `org`, `token --org`, `subscription --site` and `dead-letters --site` run in-process against the
test database, and each site's own EHR authorisation (SMART Backend Services at one, a static token at the other)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from service.app import sites
from service.app.sites import site_directory
from service.auth import Role, verify_token
from service.cli import main as cli_main
from service.errors import UpstreamError
from service.settings import Settings
from tests.integration.test_sites_ehr import Auth, deliver, discharge_at, peer_with_contact
from tests.support import smart_ehr
from tests.support.ehr import TestEhr
from tests.support.keys import generate, write_key

pytestmark = pytest.mark.ehr
JWT_SECRET = "cli-secret-0123456789-0123456789-0123"


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, database_url: str, ehr: TestEhr) -> None:
    for name, value in {
        "PEERWAY_DATABASE_URL": database_url,
        "PEERWAY_EHR_BASE_URL": ehr.base_url,
        "PEERWAY_JWT_SECRET": JWT_SECRET,
        "PEERWAY_PUBLIC_BASE_URL": "https://peerway.example.org",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("PEERWAY_SUBSCRIPTION_SECRET", raising=False)


async def cli(argv: list[str]) -> int:
    """`peerway ...` in-process (it runs its own event loop, so in a thread of its own)."""
    return await asyncio.to_thread(cli_main, argv)


def secret_from(out: str) -> str:
    return out.strip().splitlines()[-1].rsplit(" ", 1)[-1]


def site_line(out: str, site: str) -> list[str]:
    return next(line.split("\t") for line in out.splitlines() if line.startswith(f"{site}\t"))


async def test_sites_and_organizations_are_managed_from_the_command_line(
    cli_env: None, capsys: pytest.CaptureFixture[str], ehr: TestEhr, ehr_b: TestEhr, app: FastAPI
) -> None:
    sessions = app.state.sessions
    assert await cli(["site", "add", "east", "--name", "East General", "--fhir-base-url", ehr.base_url]) == 0
    first = secret_from(capsys.readouterr().out)
    assert await cli(["site", "list"]) == 0
    listed = capsys.readouterr().out
    assert site_line(listed, "east")[:5] == ["east", "active", ehr.base_url, "FHIR 4.0.1", "write put"]
    assert site_line(listed, "default")[2] == "(PEERWAY_EHR_BASE_URL)"
    assert first not in listed  # only its hash is kept

    assert await cli(["site", "add", "east"]) == 1  # exists already
    assert "exists already" in capsys.readouterr().err
    assert await cli(["site", "add", "West Side"]) == 1  # not a site id
    assert (
        await cli(["site", "set", "east", "--fhir-base-url", ehr_b.base_url, "--write-mode", "conditional-create"]) == 0
    )
    assert site_line(capsys.readouterr().out, "east")[2:5] == [ehr_b.base_url, "FHIR 4.0.1", "write conditional-create"]
    assert await cli(["site", "set", "nowhere", "--name", "x"]) == 1

    assert await cli(["site", "rotate-secret", "east"]) == 0
    second = secret_from(capsys.readouterr().out)
    assert second != first
    assert await sites.site_of_secret(sessions, second) == "east"
    assert await sites.site_of_secret(sessions, first) is None
    assert await cli(["site", "disable", "east"]) == 0
    assert site_line(capsys.readouterr().out, "east")[1] == "disabled"
    assert await sites.site_of_secret(sessions, second) is None

    assert await cli(["org", "add", "peers-north", "--name", "Peers of the North"]) == 0
    assert await cli(["org", "list"]) == 0
    assert "peers-north\tPeers of the North" in capsys.readouterr().out

    assert await cli(["token", "--org", "peers-north"]) == 0
    caller = verify_token(Settings(jwt_secret=JWT_SECRET, _env_file=None), capsys.readouterr().out.strip())
    assert (caller.role, caller.organization) == (Role.ORGANIZATION_COORDINATOR, "peers-north")
    assert await cli(["token", "--role", "coordinator", "--sub", "c1", "--site", "east"]) == 0
    caller = verify_token(Settings(jwt_secret=JWT_SECRET, _env_file=None), capsys.readouterr().out.strip())
    assert (caller.role, caller.site) == (Role.COORDINATOR, "east")


async def test_the_subscription_of_a_site_is_created_at_its_ehr_with_its_secret(
    cli_env: None, capsys: pytest.CaptureFixture[str], ehr: TestEhr, ehr_b: TestEhr
) -> None:
    assert await cli(["site", "add", "south", "--fhir-base-url", ehr_b.base_url]) == 0
    secret = secret_from(capsys.readouterr().out)
    assert await cli(["subscription", "create", "--site", "south"]) == 1  # no secret given: refused
    assert "channel secret" in capsys.readouterr().err
    assert await cli(["subscription", "create", "--site", "south", "--channel-secret", "not-souths"]) == 1
    assert ehr_b.count("Subscription") == 0

    assert await cli(["subscription", "create", "--site", "south", "--channel-secret", secret]) == 0
    assert "(site south)" in capsys.readouterr().out
    stored = ehr_b.read("Subscription", "peerway-encounters")
    assert stored is not None
    assert stored["channel"]["header"] == [f"X-Peerway-Channel: {secret}"]
    assert ehr.count("Subscription") == 0  # nothing at the other EHR

    assert await cli(["subscription", "status", "--site", "south"]) == 0
    out = capsys.readouterr().out
    assert "Subscription/peerway-encounters (read): status requested" in out
    assert "channel waiting" in out  # south's channel, recorded by the create
    assert await cli(["subscription", "status", "--site", "nowhere"]) == 1


async def test_dead_letters_command_shows_one_sites_rows(
    cli_env: None,
    capsys: pytest.CaptureFixture[str],
    client: httpx.AsyncClient,
    auth: Auth,
    app: FastAPI,
    settings: Settings,
    ehr: TestEhr,
    ehr_b: TestEhr,
) -> None:
    await sites.add_site(app.state.sessions, "north", sites.SiteSpec(fhir_base_url=ehr.base_url))
    await sites.add_site(app.state.sessions, "south", sites.SiteSpec(fhir_base_url=ehr_b.base_url))
    north = await discharge_at(client, auth, "north")
    await peer_with_contact(client, auth, "north", north, "Alex North")
    ehr.fault(status=422, count=10)
    assert (await deliver(app, settings)).dead == 2
    assert await cli(["dead-letters", "list", "--site", "south"]) == 0
    assert capsys.readouterr().out == ""
    assert await cli(["dead-letters", "list", "--site", "north"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {r["kind"] for r in rows} == {"contact", "careteam"}
    assert await cli(["dead-letters", "replay", str(rows[0]["id"]), "--site", "south"]) == 1  # not south's
    assert await cli(["dead-letters", "list"]) == 0  # every site's
    assert len(capsys.readouterr().out.splitlines()) == 2


async def test_each_site_is_reached_with_its_own_authorisation(
    client: httpx.AsyncClient,
    auth: Auth,
    app: FastAPI,
    settings: Settings,
    ehr: TestEhr,
    ehr_b: TestEhr,
    tmp_path: Path,
) -> None:
    token_file = tmp_path / "north.token"
    token_file.write_text("north-static-token\n")
    await sites.add_site(
        app.state.sessions, "north", sites.SiteSpec(fhir_base_url=ehr.base_url, bearer_token_path=str(token_file))
    )
    key = generate("EC", kid="south-key")
    await sites.add_site(
        app.state.sessions,
        "south",
        sites.SiteSpec(
            fhir_base_url=ehr_b.base_url,
            token_url=smart_ehr.token_url(ehr_b),
            client_id="peerway-south",
            private_key_path=str(write_key(tmp_path, key, "pem")),
            key_id="south-key",
            scope="system/*.cruds",
        ),
    )
    # South's EHR registers what Peerway publishes: one JWK Set with every site's public key.
    published = await client.get("/.well-known/jwks.json")
    assert published.status_code == 200
    assert [k["kid"] for k in published.json()["keys"]] == ["south-key"]
    assert "d" not in published.json()["keys"][0]
    smart_ehr.register_client(ehr_b, "peerway-south", published.json())
    smart_ehr.configure(ehr_b, require=True)
    for site, name in (("north", "Alex North"), ("south", "Sam South")):
        episode = await discharge_at(client, auth, site)
        await peer_with_contact(client, auth, site, episode, name)
    report = await deliver(app, settings)
    assert (report.delivered, report.dead) == (4, 0)
    assert {r["authorization"] for r in ehr.requests()} == {"Bearer north-static-token"}
    assert smart_ehr.state(ehr_b)["issued"] == 1
    [south_token] = {r["authorization"] for r in ehr_b.requests()}
    assert south_token.startswith("Bearer ")
    assert south_token != "Bearer north-static-token"

    # A key file that cannot be read is a failure of that site only, retried (and said why), never a crash.
    await sites.update_site(app.state.sessions, "south", sites.SiteSpec(private_key_path=str(tmp_path / "gone.pem")))
    directory = site_directory(app.state.sessions, settings, ttl=0)
    try:
        with pytest.raises(UpstreamError, match="cannot read the private key file"):
            await directory.client("south")
        assert (await directory.client("north")) is not None
    finally:
        await directory.aclose()


async def test_an_organization_adopts_a_peer_of_the_single_site_era_with_its_clients(
    cli_env: None, capsys: pytest.CaptureFixture[str], client: httpx.AsyncClient, auth: Auth, app: FastAPI
) -> None:
    episode = await discharge_at(client, auth, "default")
    coordinator = auth(Role.COORDINATOR, "coord")
    peer = (await client.post("/api/peers", json={"name": "Alex Early"}, headers=coordinator)).json()
    assigned = await client.put(
        f"/api/episodes/{episode['id']}/peer", json={"peer_id": peer["id"]}, headers=coordinator
    )
    assert assigned.status_code == 200, assigned.text
    alpha = auth(Role.ORGANIZATION_COORDINATOR, "alpha-coord", org="alpha")
    await sites.add_organization(app.state.sessions, "alpha", "Alpha Peers")
    assert (await client.get("/api/org/peers", headers=alpha)).json() == []

    assert await cli(["org", "adopt", "alpha", "--peer", peer["id"]]) == 0
    assert capsys.readouterr().out.strip() == f"peer {peer['id']} now belongs to alpha; sites: default"
    assert [p["id"] for p in (await client.get("/api/org/peers", headers=alpha)).json()] == [peer["id"]]
    [load] = (await client.get("/api/org/caseloads", headers=alpha)).json()
    assert [c["client_id"] for c in load["clients"]] == [episode["client_id"]]  # the peer's client came along
    assert await cli(["org", "adopt", "nowhere", "--peer", peer["id"]]) == 1
    assert await cli(["org", "adopt", "alpha", "--peer", "no-such-peer"]) == 1
