"""Recovery through $events, where the EHR offers it: an EHR that says so in its CapabilityStatement (played
here by an httpx transport; the test EHR has no $events, see tests/integration/test_intake_ehr.py for the
search path) answers the missed event numbers, and no search is needed."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from service.ehr.client import EhrClient
from service.settings import Settings
from service.workers.intake import process_inbox
from tests.api.test_subscriptions import channels, episodes, event_notification, notify, stay
from tests.conftest import fixture_json

Auth = Callable[..., dict[str, str]]
EHR = "https://ehr.example.org/fhir"
START = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
END = datetime(2026, 11, 20, 15, 30, tzinfo=UTC)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"ehr_base_url": EHR, "subscription_gap_grace_seconds": 0.0})


class EhrWithEvents:
    """An EHR that offers $status and $events on Subscription/123, serves Patients, and remembers what it was
    asked."""

    def __init__(self, missed: dict[int, dict[str, Any]]) -> None:
        self.missed = missed
        self.asked: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.asked.append(f"{request.url.path}?{request.url.query.decode()}")
        path = request.url.path.removeprefix("/fhir/")
        if path == "metadata":
            subscription = {"type": "Subscription", "operation": [{"name": "events", "definition": "x-events"}]}
            return httpx.Response(
                200, json={"resourceType": "CapabilityStatement", "rest": [{"resource": [subscription]}]}
            )
        if path == "Subscription/123/$status":  # as the backport IG defines it: a searchset of the status
            parameters = event_notification(3)["entry"][0]["resource"]
            parameters["parameter"] = [
                {**p, "valueCode": "query-status"} if p["name"] == "type" else p
                for p in parameters["parameter"]
                if p["name"] != "notification-event"
            ]
            entry = {"resource": parameters, "search": {"mode": "match"}}
            return httpx.Response(200, json={"resourceType": "Bundle", "type": "searchset", "entry": [entry]})
        if path.startswith("Patient/"):
            return httpx.Response(200, json={"resourceType": "Patient", "id": path.split("/")[1]})
        if path == "Subscription/123/$events":
            since, until = int(request.url.params["eventsSinceNumber"]), int(request.url.params["eventsUntilNumber"])
            return httpx.Response(200, json=self._events(range(since, until + 1)))
        return httpx.Response(404, json={"resourceType": "OperationOutcome", "issue": []})

    def _events(self, numbers: range) -> dict[str, Any]:
        bundles = [event_notification(n, self.missed[n]) for n in numbers if n in self.missed]
        merged = copy.deepcopy(bundles[0])
        for parameter in merged["entry"][0]["resource"]["parameter"]:
            if parameter["name"] == "type":
                parameter["valueCode"] = "query-event"
        for extra in bundles[1:]:
            merged["entry"][0]["resource"]["parameter"] += [
                p for p in extra["entry"][0]["resource"]["parameter"] if p["name"] == "notification-event"
            ]
            merged["entry"] += extra["entry"][1:]
        return merged


async def test_missed_events_come_back_through_events_when_the_ehr_offers_it(
    client: httpx.AsyncClient, auth: Auth, app: FastAPI, settings: Settings
) -> None:
    ehr = EhrWithEvents({2: stay("stay-a", "finished", patient_id="patient-a", start=START, end=END)})
    await notify(
        client, auth, event_notification(1, stay("stay-a", "in-progress", patient_id="patient-a", start=START))
    )
    response = await notify(client, auth, event_notification(3, stay("stay-b", "in-progress", patient_id="patient-b")))
    assert "1 missed event(s) from number 2" in response.json()["issue"][0]["diagnostics"]

    reader = EhrClient(EHR, transport=httpx.MockTransport(ehr))
    try:
        report = await process_inbox(app.state.sessions, reader, settings)
    finally:
        await reader.aclose()
    assert (report.done, report.dead) == (3, 0)  # the recovery, and the two Patients the notifications lacked
    assert sorted(e["state"] for e in await episodes(client, auth)) == ["in-community", "on-ward"]
    assert "/fhir/Subscription/123/$events?eventsSinceNumber=2&eventsUntilNumber=3&content=full-resource" in ehr.asked
    assert not any(a.startswith("/fhir/Encounter") for a in ehr.asked)  # no search was needed
    assert ehr.asked.index("/fhir/metadata?") < ehr.asked.index(
        "/fhir/Subscription/123/$events?eventsSinceNumber=2&eventsUntilNumber=3&content=full-resource"
    )
    [channel] = await channels(client, auth)
    assert (channel["health"], channel["contiguous_through"], channel["events_since_start"]) == ("ok", 3, 3)
    assert "by $events" in channel["last_recovery_note"]


async def test_a_next_link_that_leaves_the_ehr_is_not_followed(settings: Settings) -> None:
    asked: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        asked.append(str(request.url))
        return httpx.Response(200, json={"resourceType": "Bundle", "type": "searchset"})

    reader = EhrClient(EHR, transport=httpx.MockTransport(answer))
    try:
        with pytest.raises(Exception, match="leaves its base"):
            await reader.page("https://elsewhere.example.org/fhir/Encounter?page=2")
    finally:
        await reader.aclose()
    assert asked == []


def test_the_examples_are_unchanged() -> None:
    # Variants are built in code from these; the files themselves stay as published.
    example = fixture_json("backport/backport-r4-full_resource_notification_bundle_example.json")
    assert json.dumps(example).count("86009987-eabe-42bf-8c02-b112b18cb616") >= 3
