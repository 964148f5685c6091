"""fhirpy, unmodified, against a real `peerway serve`: the $peer-summary operation by GET and POST through
execute(), the OperationDefinition read by reference, and our StructureDefinitions searched by url (with fhirpy's
own first() and paging through fetch_all())."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fhir.resources.R4B.bundle import Bundle
from fhirpy import AsyncFHIRClient
from fhirpy.base.exceptions import OperationOutcome, ResourceNotFound

import fhir_profiles
from service.auth import Role
from service.auth.keys import load_or_create
from tests.support.consents import peer_consent
from tests.support.flow import discharged_client_with_peer, register_peer
from tests.support.identity import TestIdentities
from tests.support.server import LiveServer, live_server


@dataclass
class Peerway:
    server: LiveServer
    base_url: str
    identities: TestIdentities

    def fhir(self, role: Role | None = None, subject: str = "tester") -> AsyncFHIRClient:
        """A fhirpy client as an app would build it: the base url and a bearer token (none: anonymous)."""
        authorization = self.identities.headers(role, subject)["Authorization"] if role else None
        return AsyncFHIRClient(f"{self.base_url}/fhir", authorization=authorization)


@pytest.fixture(scope="module")
def peerway(tmp_path_factory: pytest.TempPathFactory, auth_keys_path: Path) -> Iterator[Peerway]:
    workdir = tmp_path_factory.mktemp("serve")
    with live_server(workdir, auth_keys_path=auth_keys_path) as server:
        base_url = f"http://127.0.0.1:{server.port}"
        database = f"sqlite+aiosqlite:///{workdir / 'peerway.db'}"
        yield Peerway(server, base_url, TestIdentities(database, base_url, load_or_create(auth_keys_path)))


@pytest.fixture
async def consented(peerway: Peerway) -> AsyncIterator[tuple[dict[str, Any], dict[str, Any]]]:
    """A discharged client, their peer, and a consent letting that peer see the client's preferred name."""
    async with httpx.AsyncClient(base_url=peerway.base_url, trust_env=False) as client:
        auth = peerway.identities.headers
        episode, peer = await discharged_client_with_peer(client, auth)
        consent = peer_consent(episode["patient"], ["preferred-name"], actor=peer["practitioner"])
        response = await client.post("/fhir/Consent", json=consent, headers=auth(Role.COORDINATOR))
        assert response.status_code == 201, response.text
        yield episode, peer


def names(bundle: Any) -> list[Any]:
    Bundle.model_validate(bundle)
    assert bundle["type"] == "collection"
    return [e["resource"]["name"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"]


async def test_peer_summary_through_execute_by_get_and_post(
    peerway: Peerway, consented: tuple[dict[str, Any], dict[str, Any]]
) -> None:
    episode, peer = consented
    fhir = peerway.fhir(Role.PEER, peer["id"])
    patient = fhir.reference("Patient", episode["client_id"])
    by_get = await patient.execute("$peer-summary", method="get")
    by_post = await patient.execute("$peer-summary", method="post", data={"resourceType": "Parameters"})
    by_empty_post = await patient.execute("$peer-summary")
    assert names(by_get) == names(by_post) == names(by_empty_post)
    [[name]] = names(by_get)
    assert name["family"]

    with pytest.raises(OperationOutcome) as refused:
        await patient.execute("$peer-summary", data={"resourceType": "Parameters", "parameter": [{"name": "x"}]})
    assert refused.value.resource["issue"][0]["expression"] == ["Parameters.parameter[0].name"]


async def test_another_peer_is_told_nothing(peerway: Peerway, consented: tuple[dict[str, Any], dict[str, Any]]) -> None:
    episode, _ = consented
    async with httpx.AsyncClient(base_url=peerway.base_url, trust_env=False) as client:
        stranger = await register_peer(client, peerway.identities.headers, "Sam Elsewhere")
    patient = peerway.fhir(Role.PEER, stranger["id"]).reference("Patient", episode["client_id"])
    for method in ("get", "post"):
        with pytest.raises(ResourceNotFound):
            await patient.execute("$peer-summary", method=method)


async def test_the_operation_definition_reads_by_reference_without_a_token(peerway: Peerway) -> None:
    definition = await peerway.fhir().reference("OperationDefinition", "peer-summary").to_resource()
    assert definition["url"] == f"{fhir_profiles.CANONICAL}/OperationDefinition/peer-summary"
    assert definition["code"] == "peer-summary"
    assert definition["meta"]["versionId"] == definition["version"]
    statement = await peerway.fhir().execute("metadata", method="get")
    [patient] = [r for r in statement["rest"][0]["resource"] if r["type"] == "Patient"]
    assert [o["definition"] for o in patient["operation"]] == [definition["url"]]


async def test_structure_definitions_are_searched_by_url(peerway: Peerway) -> None:
    fhir = peerway.fhir()
    profile = await fhir.resources("StructureDefinition").search(url=fhir_profiles.PEER_CONTACT_PROFILE).first()
    assert profile is not None
    assert (profile["id"], profile["type"]) == ("peer-contact", "Encounter")
    assert await fhir.resources("StructureDefinition").search(url=f"{fhir_profiles.CANONICAL}/none").first() is None
    found = await fhir.resources("StructureDefinition").search(url=fhir_profiles.PEER_SUPPORTER_ROLE_PROFILE).fetch()
    assert [r["url"] for r in found] == [fhir_profiles.PEER_SUPPORTER_ROLE_PROFILE]

    # fhirpy pages through next links on its own: three at a time, every StructureDefinition once.
    every = await fhir.resources("StructureDefinition").limit(3).fetch_all()
    expected = sorted(r["id"] for r in fhir_profiles.artifacts() if r["resourceType"] == "StructureDefinition")
    assert sorted(r["id"] for r in every) == expected
    assert len(expected) > 3
