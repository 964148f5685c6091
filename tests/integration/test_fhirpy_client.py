"""An unmodified fhirpy AsyncFHIRClient against a real `peerway serve`: what a standard FHIR client does with
Peerway works without bending anything — paged search (limit, first, fetch_all over next links), create with
Prefer, conditional update with If-Match (a stale one refused), vread, and a peer's own contacts.

The server runs on its own SQLite database whatever PEERWAY_TEST_DB says (it is the HTTP manners under test).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fhirpy import AsyncFHIRClient
from fhirpy.base.exceptions import MultipleResourcesFound, OperationOutcome

from service.auth import Role
from service.auth.keys import load_or_create
from tests.support.consents import peer_consent
from tests.support.flow import assign, discharge, peer_contact, register_peer
from tests.support.identity import TestIdentities
from tests.support.server import LiveServer, live_server

Auth = Callable[..., dict[str, str]]


@dataclass
class Program:
    """A live server with a discharged client and their assigned peer."""

    server: LiveServer
    auth: Auth
    patient: str
    client_id: str
    peer_id: str

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"

    def fhir(self, role: Role, subject: str = "coord", **headers: str) -> AsyncFHIRClient:
        """An unmodified fhirpy client; extra headers (Prefer, If-Match) as any fhirpy user would set them."""
        bearer = self.auth(role, subject)["Authorization"]
        return AsyncFHIRClient(f"{self.base}/fhir", authorization=bearer, extra_headers=headers or None)


@pytest.fixture
def served(tmp_path: Path, auth_keys_path: Path) -> Iterator[LiveServer]:
    """A server of its own per test (a fresh database: each test sees only what it made)."""
    with live_server(tmp_path, auth_keys_path=auth_keys_path) as running:
        yield running


@pytest.fixture
async def program(served: LiveServer, tmp_path: Path, auth_keys_path: Path) -> Program:
    database = f"sqlite+aiosqlite:///{tmp_path / 'peerway.db'}"
    base = f"http://127.0.0.1:{served.port}"
    identities = TestIdentities(database, base, load_or_create(auth_keys_path))
    async with httpx.AsyncClient(base_url=base) as http:
        episode = await discharge(http, identities.headers)
        peer = await register_peer(http, identities.headers, "Alex Morgan")
        await assign(http, identities.headers, episode["id"], peer["id"])
    return Program(served, identities.headers, episode["patient"], episode["client_id"], peer["id"])


async def test_search_pages_with_limit_first_and_fetch_all(program: Program) -> None:
    coordinator = program.fhir(Role.COORDINATOR)
    created = []
    for _ in range(5):
        consent = coordinator.resource("Consent", **peer_consent(program.patient, ["preferred-name"]))
        await consent.save()
        created.append(consent["id"])
    consents = coordinator.resources("Consent").search(patient=program.patient)
    assert [c["id"] for c in await consents.limit(2).fetch()] == created[:2]
    first = await consents.first()
    assert first is not None
    assert first["id"] == created[0]
    assert [c["id"] for c in await consents.limit(2).fetch_all()] == created  # three pages over next links
    newest = await consents.sort("-_lastUpdated").first()
    assert newest is not None
    assert newest["id"] == created[-1]
    assert [c["id"] for c in await consents.search(_id=created[3]).fetch()] == [created[3]]
    # fhirpy's count() adds its own _totalMethod parameter: refused unless the client asks for lenience.
    with pytest.raises(OperationOutcome):
        await consents.count()
    lenient = program.fhir(Role.COORDINATOR, Prefer="handling=lenient")
    assert await lenient.resources("Consent").search(patient=program.patient).count() >= 5


async def test_create_with_prefer_then_conditional_update_and_vread(program: Program) -> None:
    representation = program.fhir(Role.COORDINATOR, Prefer="return=representation")
    body = peer_consent(program.patient, ["preferred-name"])
    consent = representation.resource("Consent", **body)
    await consent.save()
    assert consent["meta"]["versionId"] == "1"
    consent_id = consent["id"]

    # Minimal: the server answers no body; fhirpy keeps what it sent, and the Consent is stored all the same.
    minimal = program.fhir(Role.COORDINATOR, Prefer="return=minimal")
    quiet = minimal.resource("Consent", **peer_consent(program.patient, ["contact-details"]))
    await quiet.save()
    assert "id" not in quiet

    # If-Match on version 1: the update lands and makes version 2.
    matched = program.fhir(Role.COORDINATOR, **{"If-Match": 'W/"1"'})
    withdrawn = matched.resource("Consent", **{**body, "id": consent_id, "status": "inactive"})
    await withdrawn.save()
    assert withdrawn["meta"]["versionId"] == "2"
    # The same stale If-Match again: 412 (fhirpy names every 412 MultipleResourcesFound), nothing changed.
    stale = matched.resource("Consent", **{**body, "id": consent_id, "status": "active"})
    with pytest.raises(MultipleResourcesFound):
        await stale.save()
    reader = program.fhir(Role.COORDINATOR)
    current = await reader.reference("Consent", consent_id).to_resource()
    assert current["status"] == "inactive"
    version: Any = await reader.execute(f"Consent/{consent_id}/_history/2", method="get")
    assert version["meta"]["versionId"] == "2"
    assert version["status"] == "inactive"


async def test_a_peer_records_finds_corrects_and_cancels_a_contact(program: Program) -> None:
    peer = program.fhir(Role.PEER, program.peer_id)
    body = peer_contact(program.client_id)
    contact = peer.resource("Encounter", **body)
    await contact.save()
    assert contact["meta"]["versionId"] == "1"
    mine = peer.resources("Encounter").search(patient=f"Patient/{program.client_id}")
    assert contact["id"] in [c["id"] for c in await mine.fetch_all()]

    conditional = program.fhir(Role.PEER, program.peer_id, **{"If-Match": 'W/"1"'})
    cancelled = conditional.resource("Encounter", **{**body, "id": contact["id"], "status": "entered-in-error"})
    await cancelled.save()
    assert cancelled["status"] == "entered-in-error"
    assert cancelled["meta"]["versionId"] == "2"
    found = await peer.resources("Encounter").search(status="entered-in-error").fetch()
    assert [c["id"] for c in found] == [contact["id"]]
