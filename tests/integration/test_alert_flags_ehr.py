"""A site that asks for it gets a Flag on the client's record at its EHR when the safety net finds a discharged
client not reached (no contact, no peer), and the Flag turns inactive when the alert closes — written through
the outbox, once, whatever runs twice."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fhir.resources.R4B.flag import Flag

import fhir_profiles
from service.app.alerts import run_safety_net
from service.auth import Role
from service.settings import Settings
from tests.support.delivery import deliver, outbox
from tests.support.ehr import TestEhr
from tests.support.flow import assign, discharge, register_peer

pytestmark = pytest.mark.ehr
Auth = Callable[..., dict[str, str]]


def flags(ehr: TestEhr) -> dict[str, dict[str, Any]]:
    """The EHR's Flags by their code."""
    found = {}
    for resource in ehr.search("Flag"):
        Flag.model_validate(resource)
        found[resource["code"]["coding"][0]["code"]] = resource
    return found


async def test_a_client_not_reached_is_flagged_at_the_ehr_until_the_alert_closes(
    app: FastAPI, client: httpx.AsyncClient, auth: Auth, settings: Settings, ehr: TestEhr
) -> None:
    coordinator = auth(Role.COORDINATOR, "coord")
    wanted = {"no_contact_days": 7, "unassigned_days": 3, "weekly_minimum_minutes": 60, "ehr_flags": True}
    assert (await client.put("/api/alerts/thresholds", json=wanted, headers=coordinator)).status_code == 200
    episode = await discharge(client, auth)
    await run_safety_net(app.state.sessions, settings)
    await run_safety_net(app.state.sessions, settings)
    assert sorted(row.kind for row in await outbox(settings.database_url)) == ["flag", "flag"]  # not below-minimum

    assert (await deliver(settings, ehr)).delivered == 2
    written = flags(ehr)
    assert set(written) == {"no-contact", "unassigned"}
    silent = written["no-contact"]
    assert silent["status"] == "active"
    assert silent["subject"]["reference"].startswith("Patient/")
    assert silent["subject"]["reference"] != f"Patient/{episode['client_id']}"  # the EHR's Patient, not ours
    assert silent["code"]["coding"][0]["system"] == fhir_profiles.ALERT_KIND_SYSTEM
    assert silent["identifier"][0]["system"] == fhir_profiles.ALERT_IDENTIFIER_SYSTEM
    assert "end" not in silent["period"]

    peer = await register_peer(client, auth)
    await assign(client, auth, episode["id"], peer["id"])
    await run_safety_net(app.state.sessions, settings)  # a peer now: the unassigned alert closes
    await deliver(settings, ehr)
    written = flags(ehr)
    assert (written["unassigned"]["status"], "end" in written["unassigned"]["period"]) == ("inactive", True)
    assert written["no-contact"]["status"] == "active"
    assert ehr.count("Flag") == 2
    assert (await deliver(settings, ehr)).claimed == 0  # nothing left; nothing written twice


async def test_no_flag_unless_the_site_asks(
    app: FastAPI, client: httpx.AsyncClient, auth: Auth, settings: Settings
) -> None:
    await discharge(client, auth)
    await run_safety_net(app.state.sessions, settings)
    assert [row.kind for row in await outbox(settings.database_url)] == []
