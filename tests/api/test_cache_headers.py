"""Answers that hold PHI are never stored by a browser, proxy or app cache (Cache-Control: no-store) and never
content-sniffed; the public, PHI-free documents (CapabilityStatement, discovery) may be cached."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from service.auth import Role
from tests.support.consents import peer_consent
from tests.support.flow import discharged_client_with_peer

Auth = Callable[..., dict[str, str]]


def assert_private(response: httpx.Response) -> None:
    assert response.status_code == 200, response.text
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Content-Type-Options"] == "nosniff"


async def test_a_summary_a_consent_and_the_episode_list_are_never_cached(client: httpx.AsyncClient, auth: Auth) -> None:
    episode, peer = await discharged_client_with_peer(client, auth)
    coordinator = auth(Role.COORDINATOR, "coord")
    consent = peer_consent(episode["patient"], ["preferred-name"], actor=peer["practitioner"])
    recorded = await client.post("/fhir/Consent", json=consent, headers=coordinator)
    assert recorded.status_code == 201, recorded.text
    assert recorded.headers["Cache-Control"] == "no-store"

    summary = await client.get(
        f"/fhir/Patient/{episode['client_id']}/$peer-summary", headers=auth(Role.PEER, peer["id"])
    )
    assert_private(summary)
    assert summary.json()["entry"]  # it does hold the client's data
    assert_private(await client.get(f"/fhir/Consent/{recorded.json()['id']}", headers=coordinator))
    episodes = await client.get("/api/episodes", headers=coordinator)
    assert_private(episodes)
    assert episodes.json()


async def test_refusals_are_not_cached_either(client: httpx.AsyncClient, auth: Auth) -> None:
    for response in (
        await client.get("/api/episodes"),
        await client.get("/fhir/Consent/nothing-here", headers=auth(Role.COORDINATOR, "coord")),
    ):
        assert response.status_code in (401, 404)
        assert response.headers["Cache-Control"] == "no-store"
        assert response.headers["X-Content-Type-Options"] == "nosniff"


async def test_public_documents_may_be_cached_and_are_not_sniffed(client: httpx.AsyncClient) -> None:
    for path in ("/fhir/metadata", "/.well-known/smart-configuration", "/fhir/.well-known/smart-configuration"):
        response = await client.get(path)
        assert response.status_code == 200, path
        assert "no-store" not in response.headers.get("Cache-Control", ""), path
        assert response.headers["X-Content-Type-Options"] == "nosniff"
