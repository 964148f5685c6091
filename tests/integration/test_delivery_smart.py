"""SMART Backend Services against the test EHR: the EHR registers the JWKS Peerway publishes, checks our signed
assertion, and accepts only the tokens it issued (and only for what their scopes permit)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

import fhir_profiles
from service.settings import Settings
from tests.support import smart_ehr
from tests.support.delivery import deliver, outbox
from tests.support.ehr import TestEhr
from tests.support.flow import client_with_contact
from tests.support.keys import generate, public_jwks, write_key

pytestmark = pytest.mark.ehr
Auth = Callable[..., dict[str, str]]
CLIENT_ID = "peerway-test-client"


@pytest.fixture
def settings(settings: Settings, tmp_path: Path, ehr: TestEhr) -> Settings:
    """Peerway configured for SMART Backend Services with an EC P-384 key in a PEM file."""
    return settings.model_copy(
        update={
            "ehr_base_url": ehr.base_url,
            "ehr_token_url": smart_ehr.token_url(ehr),
            "ehr_client_id": CLIENT_ID,
            "ehr_private_key_path": str(write_key(tmp_path, generate("EC"), "pem")),
            "ehr_key_id": "peerway-1",
        }
    )


async def register_what_peerway_publishes(client: httpx.AsyncClient, ehr: TestEhr, scope: str) -> dict[str, str]:
    published = await client.get("/.well-known/jwks.json")  # public: no token
    assert published.status_code == 200
    [jwk] = published.json()["keys"]
    assert jwk["kid"] == "peerway-1"
    assert jwk["alg"] == "ES384"
    assert "d" not in jwk
    smart_ehr.register_client(ehr, CLIENT_ID, published.json(), scope=scope)
    smart_ehr.configure(ehr, require=True)
    return dict(jwk)


async def test_an_ehr_that_requires_smart_tokens_gets_the_contact(
    client: httpx.AsyncClient, auth: Auth, settings: Settings, ehr: TestEhr
) -> None:
    await register_what_peerway_publishes(client, ehr, "system/*.cruds")
    _, _, contact = await client_with_contact(client, auth)

    report = await deliver(settings, ehr)

    assert (report.delivered, report.dead) == (2, 0)
    found = ehr.search("Encounter", identifier=f"{fhir_profiles.CONTACT_IDENTIFIER_SYSTEM}|{contact['id']}")
    assert len(found) == 1
    [token_request] = smart_ehr.state(ehr)["requests"]
    assert token_request["status"] == 200
    assert token_request["header"]["alg"] == "ES384"
    assert token_request["header"]["kid"] == "peerway-1"
    claims = token_request["claims"]
    assert claims["iss"] == claims["sub"] == CLIENT_ID
    assert claims["aud"] == smart_ehr.token_url(ehr)
    assert claims["exp"] - claims["iat"] <= 300
    assert token_request["scope"] == "system/Encounter.cu system/Practitioner.cu system/CareTeam.cu"
    writes = ehr.requests()
    assert writes
    assert all(r["authorization"] and r["authorization"].startswith("Bearer ") for r in writes)
    assert len({r["authorization"] for r in writes}) == 1  # one token, reused


async def test_an_ehr_that_does_not_know_our_key_leaves_the_rows_waiting_not_dead(
    client: httpx.AsyncClient, auth: Auth, settings: Settings, ehr: TestEhr
) -> None:
    smart_ehr.register_client(ehr, CLIENT_ID, public_jwks(generate("EC"), "someone-else"))
    smart_ehr.configure(ehr, require=True)
    await client_with_contact(client, auth)

    report = await deliver(settings, ehr)

    # Both rows (the contact's Encounter and the CareTeam) failed and wait for a retry; on a slow machine the
    # first retry (1-2 s later) may come due before the delivery loop ends, so a row may have been tried twice.
    assert (report.delivered, report.dead) == (0, 0)
    assert report.retrying >= 2
    assert ehr.requests() == []  # nothing reached /fhir without a token
    assert {r["error"] for r in smart_ehr.state(ehr)["requests"]} == {"invalid_client"}
    for row in await outbox(settings.database_url):
        assert row.status == "pending"
        assert row.last_error is not None
        assert "invalid_client" in row.last_error


async def test_a_write_the_tokens_scopes_do_not_cover_is_a_dead_letter_with_the_outcome(
    client: httpx.AsyncClient, auth: Auth, settings: Settings, ehr: TestEhr
) -> None:
    await register_what_peerway_publishes(client, ehr, "system/Encounter.cu")  # no Practitioner, no CareTeam
    await client_with_contact(client, auth)

    report = await deliver(settings, ehr)

    assert report.dead == 2
    assert ehr.count("Encounter") == 0
    rows = await outbox(settings.database_url)
    assert {row.last_status for row in rows} == {403}
    assert all(row.outcome_json and "system/Practitioner.u" in row.outcome_json for row in rows)
