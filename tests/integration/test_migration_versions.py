"""Migration 0009 on a database holding Consents recorded before it: each gets its identifier, so If-None-Exist
finds it afterwards (an EHR's retry must not record a second active copy)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
from alembic import command

from service.auth import Role
from service.store.migrate import alembic_config, upgrade
from tests.api.test_fhir_rest import a_client, post_consent
from tests.support.consents import peer_consent

Auth = Callable[..., dict[str, str]]
IDENTIFIER = {"system": "urn:oid:2.16.840.1.113883.3.239", "value": "consent-form-17"}


async def test_consents_recorded_before_0009_are_found_by_identifier_after_it(
    client: httpx.AsyncClient, auth: Auth, database_url: str
) -> None:
    patient = await a_client(client, auth)
    first = await post_consent(client, auth, {**peer_consent(patient, ["preferred-name"]), "identifier": [IDENTIFIER]})
    assert first.status_code == 201
    # Back to the schema before 0009 (the identifier column goes, the Consent stays), then forward again.
    await asyncio.to_thread(command.downgrade, alembic_config(database_url), "0008_jobs")
    await asyncio.to_thread(upgrade, database_url)
    again = await client.post(
        "/fhir/Consent",
        json={**peer_consent(patient, ["preferred-name"]), "identifier": [IDENTIFIER]},
        headers=auth(Role.COORDINATOR, "c", **{"If-None-Exist": f"identifier={IDENTIFIER['system']}|consent-form-17"}),
    )
    assert again.status_code == 200, again.text
    assert again.json()["id"] == first.json()["id"]
    listed = await client.get("/fhir/Consent", params={"patient": patient}, headers=auth(Role.COORDINATOR, "c"))
    assert len(listed.json()["entry"]) == 1
