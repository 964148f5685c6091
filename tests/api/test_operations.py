"""$peer-summary is Peerway's own operation (not the International Patient Summary's $summary): GET or POST,
defined by an OperationDefinition served at its canonical url, with the same consent checks and audit."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fhir.resources.R4B.bundle import Bundle

from service.auth import Role
from tests.support.consents import peer_consent
from tests.support.flow import discharged_client_with_peer, register_peer

Auth = Callable[..., dict[str, str]]


async def consented(client: httpx.AsyncClient, auth: Auth) -> tuple[dict[str, Any], dict[str, Any]]:
    """A discharged client whose peer may see their preferred name."""
    episode, peer = await discharged_client_with_peer(client, auth)
    consent = peer_consent(episode["patient"], ["preferred-name"], actor=peer["practitioner"])
    assert (await client.post("/fhir/Consent", json=consent, headers=auth(Role.COORDINATOR))).status_code == 201
    return episode, peer


async def audit_count(client: httpx.AsyncClient, auth: Auth, patient: str) -> int:
    response = await client.get("/fhir/AuditEvent", params={"patient": patient}, headers=auth(Role.COORDINATOR))
    assert response.status_code == 200
    return len(response.json().get("entry", []))


def shared(response: httpx.Response) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/fhir+json; charset=utf-8"
    Bundle.model_validate(response.json())
    assert response.json()["type"] == "collection"
    return [e["resource"] for e in response.json().get("entry", [])]


@pytest.mark.parametrize(
    "body",
    [b"", b'{"resourceType": "Parameters"}'],
    ids=["empty", "parameters-without-parameters"],
)
async def test_get_and_post_give_the_same_summary_and_each_is_audited(
    client: httpx.AsyncClient, auth: Auth, body: bytes
) -> None:
    episode, peer = await consented(client, auth)
    url = f"/fhir/Patient/{episode['client_id']}/$peer-summary"
    headers = auth(Role.PEER, peer["id"])
    got = shared(await client.get(url, headers=headers))
    posted = shared(await client.post(url, content=body, headers=headers | {"Content-Type": "application/fhir+json"}))
    assert [r["resourceType"] for r in got] == ["Patient"]
    assert got[0]["name"] == posted[0]["name"]
    assert (
        set(got[0]) == set(posted[0]) == {"resourceType", "id", "name", "communication"}
    )  # preferred name: the languages too
    assert await audit_count(client, auth, episode["patient"]) == 2


async def test_the_old_summary_name_is_gone(client: httpx.AsyncClient, auth: Auth) -> None:
    """A client asking for the International Patient Summary ($summary) must not get our Bundle collection."""
    episode, peer = await consented(client, auth)
    response = await client.get(f"/fhir/Patient/{episode['client_id']}/$summary", headers=auth(Role.PEER, peer["id"]))
    assert response.status_code == 404
    assert response.json()["resourceType"] == "OperationOutcome"
    assert await audit_count(client, auth, episode["patient"]) == 0


async def test_my_clients_link_to_the_operation(client: httpx.AsyncClient, auth: Auth) -> None:
    episode, peer = await consented(client, auth)
    [mine] = (await client.get("/api/me/clients", headers=auth(Role.PEER, peer["id"]))).json()
    assert mine["summary"] == f"/fhir/Patient/{episode['client_id']}/$peer-summary"
    assert shared(await client.get(mine["summary"], headers=auth(Role.PEER, peer["id"])))


async def test_post_refuses_a_parameter_it_does_not_define_before_disclosing(
    client: httpx.AsyncClient, auth: Auth
) -> None:
    episode, peer = await consented(client, auth)
    body = {"resourceType": "Parameters", "parameter": [{"name": "composition", "valueString": "x"}]}
    response = await client.post(
        f"/fhir/Patient/{episode['client_id']}/$peer-summary", json=body, headers=auth(Role.PEER, peer["id"])
    )
    assert response.status_code == 400
    assert response.json()["issue"][0]["expression"] == ["Parameters.parameter[0].name"]
    assert await audit_count(client, auth, episode["patient"]) == 0


@pytest.mark.parametrize(
    ("body", "expression"),
    [
        (b"not json", None),
        (b'{"resourceType": "Patient"}', "resourceType"),
        (b'{"resourceType": "Parameters", "parameter": [{"valueString": "x"}]}', "Parameters.parameter[0].name"),
        (b"[]", None),
    ],
    ids=["text", "another-resource", "parameter-without-name", "array"],
)
async def test_post_refuses_a_body_that_is_not_parameters(
    client: httpx.AsyncClient, auth: Auth, body: bytes, expression: str | None
) -> None:
    episode, peer = await consented(client, auth)
    response = await client.post(
        f"/fhir/Patient/{episode['client_id']}/$peer-summary",
        content=body,
        headers=auth(Role.PEER, peer["id"]) | {"Content-Type": "application/fhir+json"},
    )
    assert response.status_code == 400, response.text
    assert response.json()["resourceType"] == "OperationOutcome"
    if expression is not None:
        assert response.json()["issue"][0]["expression"] == [expression]


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_another_peer_gets_the_same_404_either_way(client: httpx.AsyncClient, auth: Auth, method: str) -> None:
    episode, _ = await consented(client, auth)
    stranger = await register_peer(client, auth, "Sam Elsewhere")
    response = await client.request(
        method, f"/fhir/Patient/{episode['client_id']}/$peer-summary", headers=auth(Role.PEER, stranger["id"])
    )
    unknown = await client.request(
        method, "/fhir/Patient/no-such-client/$peer-summary", headers=auth(Role.PEER, stranger["id"])
    )
    assert response.status_code == unknown.status_code == 404
    assert response.json()["issue"][0]["diagnostics"].replace(episode["client_id"], "X") == unknown.json()["issue"][0][
        "diagnostics"
    ].replace("no-such-client", "X")


@pytest.mark.parametrize("role", [Role.COORDINATOR, Role.EHR_SYSTEM])
async def test_only_peers_may_call_it(client: httpx.AsyncClient, auth: Auth, role: Role) -> None:
    episode, _ = await consented(client, auth)
    for method in ("GET", "POST"):
        response = await client.request(
            method, f"/fhir/Patient/{episode['client_id']}/$peer-summary", headers=auth(role)
        )
        assert response.status_code == 403, (method, response.text)
