"""The first administrator comes from the command line: `peerway issuer add`, `peerway user add`, then the rest
through the API; `peerway client add` registers an EHR; `peerway auth rotate-key` rotates Peerway's key."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest

from service.auth.keys import load_or_create
from service.cli import main as cli_main
from service.settings import Settings
from tests.support.identity import TEST_ISSUER, people_jwks, person_token


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, settings: Settings, tmp_path: Path) -> Path:
    monkeypatch.setenv("PEERWAY_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("PEERWAY_AUTH_KEYS_PATH", settings.auth_keys_path)
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps(people_jwks()))
    return jwks


async def cli(argv: list[str]) -> int:
    return await asyncio.to_thread(cli_main, argv)


async def test_an_administrator_bootstrapped_from_the_command_line_keeps_the_registry(
    cli_env: Path, client: httpx.AsyncClient, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        await cli(
            ["issuer", "add", "staff-idp", "--url", TEST_ISSUER, "--site", "default", "--jwks-file", str(cli_env)]
        )
        == 0
    )
    assert await cli(["user", "add", "--issuer", "staff-idp", "--subject", "root", "--role", "administrator"]) == 0
    capsys.readouterr()
    assert await cli(["user", "list"]) == 0
    [line] = capsys.readouterr().out.splitlines()
    assert line.split("\t")[1:3] == ["active", "administrator"]
    admin = {"Authorization": f"Bearer {person_token('root')}"}
    people = await client.get("/api/admin/people", headers=admin)
    assert people.status_code == 200, people.text
    assert [p["subject"] for p in people.json()] == ["root"]
    # A coordinator bound to a site the issuer does not speak for is refused, in one line naming why.
    assert (
        await cli(["user", "add", "--issuer", "staff-idp", "--subject", "c", "--role", "coordinator", "--site", "x"])
        == 1
    )
    assert "needs a registered site" in capsys.readouterr().err
    person_id = line.split("\t")[0]
    assert await cli(["user", "disable", person_id]) == 0
    assert (await client.get("/api/admin/people", headers=admin)).status_code == 403


async def test_an_ehr_client_is_registered_and_peerways_key_rotated(
    cli_env: Path, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    scope = ["--scope", "system/Encounter.u", "--scope", "system/Consent.cru"]
    assert await cli(["client", "add", "north-ehr", "--site", "default", "--jwks-file", str(cli_env), *scope]) == 0
    capsys.readouterr()
    assert await cli(["client", "list"]) == 0
    assert capsys.readouterr().out.split("\t")[:3] == ["north-ehr", "active", "ehr"]
    before = load_or_create(Path(settings.auth_keys_path)).current_kid
    assert await cli(["auth", "rotate-key"]) == 0
    after = capsys.readouterr().out.strip()
    assert after != before
    assert [k["kid"] for k in load_or_create(Path(settings.auth_keys_path)).public_jwks()["keys"]] == [after, before]
