"""A peer's correction or cancellation of a contact reaches the EHR: the worker rewrites the same Encounter
there (no second copy), with the new length or status entered-in-error, in both write modes."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

import fhir_profiles
from service.auth import Role
from service.settings import Settings
from tests.support.delivery import deliver
from tests.support.ehr import TestEhr
from tests.support.flow import client_with_contact, peer_contact

pytestmark = pytest.mark.ehr
Auth = Callable[..., dict[str, str]]


@pytest.mark.parametrize("mode", ["put", "conditional-create", "batch"])
async def test_a_corrected_then_cancelled_contact_is_rewritten_at_the_ehr(
    client: httpx.AsyncClient, auth: Auth, settings: Settings, ehr: TestEhr, mode: str
) -> None:
    episode, peer, contact = await client_with_contact(client, auth)
    mine = auth(Role.PEER, peer["id"])
    assert (await deliver(settings, ehr, ehr_write_mode=mode)).dead == 0
    identifier = f"{fhir_profiles.CONTACT_IDENTIFIER_SYSTEM}|{contact['id']}"
    [written] = ehr.search("Encounter", identifier=identifier)
    assert written["status"] == "finished"

    url = f"/fhir/Encounter/{contact['id']}"
    corrected = peer_contact(episode["client_id"], minutes=45) | {"id": contact["id"]}
    assert (await client.put(url, json=corrected, headers=mine | {"If-Match": 'W/"1"'})).status_code == 200
    assert (await deliver(settings, ehr, ehr_write_mode=mode)).delivered == 1
    [written] = ehr.search("Encounter", identifier=identifier)
    assert written["length"]["value"] == 45

    cancelled = corrected | {"status": "entered-in-error"}
    assert (await client.put(url, json=cancelled, headers=mine | {"If-Match": 'W/"2"'})).status_code == 200
    report = await deliver(settings, ehr, ehr_write_mode=mode)
    assert (report.delivered, report.dead) == (1, 0)
    found = ehr.search("Encounter", identifier=identifier)
    assert [e["status"] for e in found] == ["entered-in-error"]  # the same Encounter, cancelled; no second copy
    assert fhir_profiles.check_conformance(found[0], fhir_profiles.PEER_CONTACT_PROFILE) == []
