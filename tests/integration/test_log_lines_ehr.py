"""Logs people can read: a hospital message and a delivery to the EHR each leave one line an operator can go on
from (Peerway's client, episode and contact ids, the site, the request id the sender gave), in text and in
JSON, with a timestamp, level and logger — and nothing about the patient."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

import httpx
import pytest

from service.api.logs import JsonFormatter, RequestIdFilter, TextFormatter
from service.auth import Role
from service.settings import Settings
from tests.conftest import fixture_json
from tests.support.delivery import deliver
from tests.support.ehr import TestEhr
from tests.support.flow import DISCHARGE, assign, peer_contact, register_peer

pytestmark = pytest.mark.ehr
Auth = Callable[..., dict[str, str]]
# What the discharge Bundle says about the patient: name, birth date, SSN, phone, address.
PHI = ("Halvorson124", "Elden718", "2000-10-15", "999-87-1037", "555-903-1143", "Crona Corner")


async def test_one_line_per_intake_and_per_delivery_with_ids_only(
    client: httpx.AsyncClient, auth: Auth, settings: Settings, ehr: TestEhr, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.handler.addFilter(RequestIdFilter())
    message = fixture_json(DISCHARGE)
    assert all(value in json.dumps(message) for value in PHI)  # each is there to be leaked
    sent = await client.post(
        "/fhir/$process-message",
        json=message,
        headers=auth(Role.EHR_SYSTEM, "hospital", **{"X-Request-ID": "c0ffee00c0ffee00c0ffee00c0ffee00"}),
    )
    assert sent.status_code == 200, sent.text
    assert sent.headers["x-request-id"] == "c0ffee00c0ffee00c0ffee00c0ffee00"
    [episode] = (await client.get("/api/episodes", headers=auth(Role.COORDINATOR))).json()
    peer = await register_peer(client, auth)
    await assign(client, auth, episode["id"], peer["id"])
    contact = await client.post(
        "/fhir/Encounter", json=peer_contact(episode["client_id"]), headers=auth(Role.PEER, peer["id"])
    )
    assert contact.status_code == 201, contact.text
    report = await deliver(settings, ehr)
    assert (report.delivered, report.dead) == (2, 0)

    records = [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    [intake] = [r for r in records if r.getMessage().startswith("intake:")]
    assert episode["client_id"] in intake.getMessage()
    assert episode["id"] in intake.getMessage()
    assert message["id"] in intake.getMessage()
    assert intake.request_id == "c0ffee00c0ffee00c0ffee00c0ffee00"  # type: ignore[attr-defined]
    delivered = sorted(r.getMessage() for r in records if r.getMessage().startswith("delivered "))
    assert len(delivered) == 2
    assert delivered[0].startswith(f"delivered CareTeam of episode {episode['id']} to site default's EHR (job ")
    assert delivered[1].startswith(f"delivered contact {contact.json()['id']} to site default's EHR (job ")

    text_lines = [TextFormatter().format(r) for r in records]
    json_lines = [json.loads(JsonFormatter().format(r)) for r in records]
    for line in text_lines:
        assert not any(value in line for value in PHI), line
    intake_line = TextFormatter().format(intake)
    assert intake_line.split(" ")[1:4] == ["INFO", "service.app.intake", "[c0ffee00c0ffee00c0ffee00c0ffee00]"]
    assert intake_line[:4].isdigit()
    assert intake_line[10] == "T"
    for entry in json_lines:
        assert {"timestamp", "level", "logger", "request_id", "message"} <= set(entry)
        assert not any(value in json.dumps(entry) for value in PHI)
