"""Conditional-create mode, for EHRs that refuse our ids: when our identifier is already on several resources
(a 412) or a search after our create finds a twin, the worker keeps the oldest, removes the others and
reports it — it does not retry blindly, and it does not leave the chart doubled."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import pytest

import fhir_profiles
from service.ehr.client import EhrClient
from service.settings import Settings
from tests.support.delivery import deliver, outbox
from tests.support.ehr import TestEhr
from tests.support.flow import client_with_contact

pytestmark = pytest.mark.ehr
Auth = Callable[..., dict[str, str]]
CONDITIONAL = "conditional-create"


def identifier_of(contact: dict[str, Any]) -> str:
    return f"{fhir_profiles.CONTACT_IDENTIFIER_SYSTEM}|{contact['id']}"


def store_directly(ehr: TestEhr, resource: dict[str, Any]) -> dict[str, Any]:
    """Create at the EHR behind Peerway's back (a server-assigned id)."""
    created: dict[str, Any] = httpx.post(
        f"{ehr.root_url}/__admin/fhir/{resource['resourceType']}", json=resource
    ).json()
    return created


async def test_a_412_for_several_matches_keeps_the_oldest_and_reports(
    client: httpx.AsyncClient, auth: Auth, settings: Settings, ehr: TestEhr
) -> None:
    _, _, contact = await client_with_contact(client, auth)
    # Earlier runs (or another integration) left two copies of the contact at the EHR.
    twin = {
        "resourceType": "Encounter",
        "identifier": [{"system": fhir_profiles.CONTACT_IDENTIFIER_SYSTEM, "value": contact["id"]}],
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "FLD"},
        "subject": {"reference": "Patient/somebody"},
    }
    created = [store_directly(ehr, twin) for _ in range(2)]
    oldest = min(created, key=lambda r: (r["meta"]["lastUpdated"], r["id"]))

    report = await deliver(settings, ehr, ehr_write_mode=CONDITIONAL)

    assert (report.delivered, report.dead) == (2, 0)
    assert 412 in [r["status"] for r in ehr.requests() if r["method"] == "POST"]
    [kept] = ehr.search("Encounter", identifier=identifier_of(contact))
    assert kept["id"] == oldest["id"]
    [row] = [r for r in await outbox(settings.database_url) if r.kind == "contact"]
    assert row.status == "done"
    assert row.last_error is not None
    assert "resolved 1 duplicate Encounter" in row.last_error


class RacingEhr:
    """An EHR where someone else's create of the same contact landed just before ours."""

    def __init__(self) -> None:
        self.deleted: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = urlparse(str(request.url)).path.removeprefix("/fhir/")
        if request.method == "POST":
            body = json.loads(request.content)
            return httpx.Response(201, json=body | {"id": "ours", "meta": {"lastUpdated": "2026-11-26T10:00:01Z"}})
        if request.method == "GET":
            identifier = parse_qs(urlparse(str(request.url)).query)["identifier"][0]
            system, value = identifier.split("|")
            matches = [("theirs", "2026-11-26T10:00:00Z"), ("ours", "2026-11-26T10:00:01Z")]
            entries = [
                {
                    "resource": {
                        "resourceType": path,
                        "id": rid,
                        "meta": {"lastUpdated": when},
                        "identifier": [{"system": system, "value": value}],
                    },
                    "search": {"mode": "match"},
                }
                for rid, when in matches
            ]
            return httpx.Response(200, json={"resourceType": "Bundle", "type": "searchset", "entry": entries})
        if request.method == "DELETE":
            self.deleted.append(path)
            return httpx.Response(204)
        return httpx.Response(200, json=json.loads(request.content))


async def test_a_twin_found_after_our_create_is_removed(
    client: httpx.AsyncClient, auth: Auth, settings: Settings, ehr: TestEhr
) -> None:
    await client_with_contact(client, auth)
    racing = RacingEhr()
    fake = EhrClient("http://racing.test/fhir", transport=httpx.MockTransport(racing))

    report = await deliver(settings, ehr, client=fake, ehr_write_mode=CONDITIONAL)
    await fake.aclose()

    assert (report.delivered, report.dead) == (2, 0)
    # Ours (the newer) went, theirs stayed: for the Practitioner, the CareTeam and the Encounter alike.
    assert sorted(racing.deleted) == ["CareTeam/ours", "Encounter/ours", "Practitioner/ours"]
