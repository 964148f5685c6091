"""What Peerway reads from an EHR's Subscription $status answer when it recovers missed events: the backport
IG defines it as a searchset Bundle of status resources (Operations.fsh: "The Bundle type is searchset"), with
a Parameters status in R4 and a SubscriptionStatus in R4B and R5. Built from the IG's R4 heartbeat example
(tests/fixtures/backport), its status entry retyped query-status and counting 12 events."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from service.errors import InvalidResource
from service.fhir.backport import subscription_report
from tests.conftest import fixture_json

HEARTBEAT = "backport/backport-r4-heartbeat_bundle_example.json"


def r4_status() -> dict[str, Any]:
    parameters: dict[str, Any] = copy.deepcopy(fixture_json(HEARTBEAT)["entry"][0]["resource"])
    for parameter in parameters["parameter"]:
        if parameter["name"] == "type":
            parameter["valueCode"] = "query-status"
        if parameter["name"] == "events-since-subscription-start":
            parameter["valueString"] = "12"
    return parameters


def subscription_status(*, r5: bool) -> dict[str, Any]:
    """The same status as R4B or R5 writes it (R5 here with an event and its additional context)."""
    status: dict[str, Any] = {
        "resourceType": "SubscriptionStatus",
        "status": "active",
        "type": "query-status",
        "eventsSinceSubscriptionStart": "12",
        "subscription": {"reference": "https://fhirserver.org/fhir/Subscription/123"},
        "topic": "http://fhirserver.org/topics/patient-admission",
    }
    if r5:
        status["notificationEvent"] = [
            {
                "eventNumber": "12",
                "focus": {"reference": "Encounter/1"},
                "additionalContext": [{"reference": "Patient/1"}],
            }
        ]
    return status


def searchset(*resources: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(resources),
        "entry": [{"resource": r, "search": {"mode": "match"}} for r in resources],
    }


@pytest.mark.parametrize(
    "answer",
    [
        searchset(r4_status()),
        searchset(subscription_status(r5=False)),
        searchset(subscription_status(r5=True)),
        # An OperationOutcome may come along (search.mode outcome); the status is still found.
        searchset({"resourceType": "OperationOutcome", "issue": []}, r4_status()),
    ],
    ids=["R4 backport", "R4B", "R5", "with an OperationOutcome first"],
)
def test_a_status_searchset_gives_the_event_count(answer: dict[str, Any]) -> None:
    report = subscription_report(answer, "$status")
    assert report.subscription == "Subscription/123"
    assert report.status == "active"
    assert report.events_since_start == 12
    assert report.topic == "http://fhirserver.org/topics/patient-admission"


def test_a_server_answering_the_notification_form_is_still_read() -> None:
    bundle = copy.deepcopy(fixture_json(HEARTBEAT))
    bundle["entry"][0]["resource"] = r4_status()
    assert subscription_report(bundle, "$status").events_since_start == 12


def test_a_searchset_without_a_status_is_refused_naming_its_entries() -> None:
    with pytest.raises(InvalidResource) as refused:
        subscription_report(searchset({"resourceType": "Patient", "id": "x"}), "$status")
    assert refused.value.expression == "Bundle.entry"
