"""Subscription notifications in: R4 backport, R4B and R5 forms on one endpoint; handshake, heartbeat and
event notifications; duplicates, order, authenticity and limits.

The R4B and R5 variants are built here from the backport IG's R4 examples (tests/fixtures/backport), so the
difference between the forms is visible in code: R4B moves the Parameters into a SubscriptionStatus resource;
R5 also changes Bundle.type to subscription-notification and the Encounter to R5 (status completed, class a
list, actualPeriod, admission).
"""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy import select

from service.auth import Role
from service.main import create_app
from service.settings import Settings
from service.store.models import Episode
from tests.conftest import fixture_json

Auth = Callable[..., dict[str, str]]
Mutation = Callable[[dict[str, Any]], dict[str, Any]]
ENDPOINT = "/fhir/subscription-notification"
FHIR_JSON = "application/fhir+json"
HANDSHAKE = "backport/backport-r4-handshake_bundle_example.json"
HEARTBEAT = "backport/backport-r4-heartbeat_bundle_example.json"
FULL = "backport/backport-r4-full_resource_notification_bundle_example.json"
ID_ONLY = "backport/backport-r4-id_only_notification_bundle_example.json"
SUBSCRIPTION = "backport/backport-r4-Subscription_full-resource.json"
EXAMPLES = (HANDSHAKE, HEARTBEAT, FULL, ID_ONLY)
ENCOUNTER_ID = "86009987-eabe-42bf-8c02-b112b18cb616"  # the examples' focus
PATIENT_ID = "1599eb66-431a-447c-a3de-6897fe9ae9a1"
SECRET = "channel-secret-0123456789-abcdef"
R4B_PROFILE = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription-notification"


# --- the three forms -----------------------------------------------------------------------------------------


def as_r4b(r4: dict[str, Any]) -> dict[str, Any]:
    """The R4 backport notification as R4B sends it: the same Bundle with a SubscriptionStatus first."""
    bundle = copy.deepcopy(r4)
    parameters = bundle["entry"][0]["resource"]
    named = {p["name"]: p for p in parameters["parameter"]}
    status: dict[str, Any] = {
        "resourceType": "SubscriptionStatus",
        "id": parameters["id"],
        "status": named["status"]["valueCode"],
        "type": named["type"]["valueCode"],
        "subscription": named["subscription"]["valueReference"],
        "topic": named["topic"]["valueCanonical"],
    }
    if "events-since-subscription-start" in named:
        status["eventsSinceSubscriptionStart"] = named["events-since-subscription-start"]["valueString"]
    events = []
    for event in (p for p in parameters["parameter"] if p["name"] == "notification-event"):
        parts = {part["name"]: part for part in event["part"]}
        found: dict[str, Any] = {"eventNumber": parts["event-number"]["valueString"]}
        if "timestamp" in parts:
            found["timestamp"] = parts["timestamp"]["valueInstant"]
        if "focus" in parts:
            found["focus"] = parts["focus"]["valueReference"]
        events.append(found)
    if events:
        status["notificationEvent"] = events
    bundle["entry"][0]["resource"] = status
    bundle["meta"] = {"profile": [R4B_PROFILE]}
    return bundle


R5_STATUS = {"finished": "completed", "onleave": "on-hold"}


def r5_encounter(r4: dict[str, Any]) -> dict[str, Any]:
    encounter = copy.deepcopy(r4)
    encounter["status"] = R5_STATUS.get(encounter["status"], encounter["status"])
    if "class" in encounter:
        encounter["class"] = [{"coding": [encounter["class"]]}]
    if "period" in encounter:
        encounter["actualPeriod"] = encounter.pop("period")
    if "hospitalization" in encounter:
        encounter["admission"] = encounter.pop("hospitalization")
    return encounter


def as_r5(r4: dict[str, Any]) -> dict[str, Any]:
    """R5: Bundle.type subscription-notification, an R5 SubscriptionStatus (integer64 as JSON strings), R5
    resources."""
    bundle = as_r4b(r4)
    bundle["type"] = "subscription-notification"
    del bundle["meta"]
    for entry in bundle["entry"][1:]:
        if entry.get("resource", {}).get("resourceType") == "Encounter":
            entry["resource"] = r5_encounter(entry["resource"])
    return bundle


FORMS: dict[str, Mutation] = {"r4-backport": lambda b: copy.deepcopy(b), "r4b": as_r4b, "r5": as_r5}


# --- building notifications from the examples ----------------------------------------------------------------


def instant(when: datetime) -> str:
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def stay(
    encounter_id: str = ENCOUNTER_ID,
    status: str = "in-progress",
    *,
    patient_id: str = PATIENT_ID,
    start: datetime | None = None,
    end: datetime | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The example's Encounter with another id, status, subject or period."""
    encounter: dict[str, Any] = copy.deepcopy(fixture_json(FULL)["entry"][1]["resource"])
    encounter["id"] = encounter_id
    encounter["status"] = status
    encounter["subject"] = {"reference": f"https://fhirserver.org/fhir/Patient/{patient_id}"}
    period = {k: instant(v) for k, v in (("start", start), ("end", end)) if v is not None}
    if period:
        encounter["period"] = period
    encounter.update(extra)
    return encounter


def event_notification(
    number: int,
    encounter: dict[str, Any] | None = None,
    *,
    payload: str = "full-resource",
    events_since: int | None = None,
    subscription: str = "https://fhirserver.org/fhir/Subscription/123",
    patient: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> dict[str, Any]:
    """The full-resource example, renumbered, about `encounter` (its focus), in the payload style asked for."""
    bundle = copy.deepcopy(fixture_json(FULL))
    encounter = encounter if encounter is not None else stay()
    when = instant(at or datetime.now(UTC))
    bundle["id"] = f"notification-{number}-{encounter['id']}"
    bundle["timestamp"] = when
    parameters = bundle["entry"][0]["resource"]["parameter"]
    for parameter in parameters:
        if parameter["name"] == "subscription":
            parameter["valueReference"]["reference"] = subscription
        if parameter["name"] == "events-since-subscription-start":
            parameter["valueString"] = str(events_since if events_since is not None else number)
        if parameter["name"] == "notification-event":
            parts = {"event-number": str(number), "timestamp": when}
            for part in parameter["part"]:
                if part["name"] == "event-number":
                    part["valueString"] = parts["event-number"]
                elif part["name"] == "timestamp":
                    part["valueInstant"] = when
                elif part["name"] == "focus":
                    part["valueReference"]["reference"] = f"https://fhirserver.org/fhir/Encounter/{encounter['id']}"
            if payload == "empty":
                parameter["part"] = [p for p in parameter["part"] if p["name"] != "focus"]
    entry = bundle["entry"][1]
    entry["fullUrl"] = f"https://fhirserver.org/fhir/Encounter/{encounter['id']}"
    if payload == "full-resource":
        entry["resource"] = encounter
        if patient is not None:
            bundle["entry"].append(
                {
                    "fullUrl": f"https://fhirserver.org/fhir/Patient/{patient['id']}",
                    "resource": patient,
                    "request": {"method": "GET", "url": f"Patient/{patient['id']}"},
                    "response": {"status": "200"},
                }
            )
    else:
        del entry["resource"]
        if payload == "empty":
            bundle["entry"] = bundle["entry"][:1]
    return bundle


async def notify(
    client: httpx.AsyncClient, auth: Auth, bundle: dict[str, Any] | bytes, headers: dict[str, str] | None = None
) -> httpx.Response:
    body = bundle if isinstance(bundle, bytes) else json.dumps(bundle).encode()
    sent = headers if headers is not None else auth(Role.EHR_SYSTEM, "hospital")
    return await client.post(ENDPOINT, content=body, headers={"Content-Type": FHIR_JSON, **sent})


async def episodes(client: httpx.AsyncClient, auth: Auth) -> list[dict[str, Any]]:
    response = await client.get("/api/episodes", headers=auth(Role.COORDINATOR, "coord"))
    assert response.status_code == 200
    found: list[dict[str, Any]] = response.json()
    return found


async def channels(client: httpx.AsyncClient, auth: Auth) -> list[dict[str, Any]]:
    response = await client.get("/api/channels", headers=auth(Role.COORDINATOR, "coord"))
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()
    return found


# --- every example, in every form ----------------------------------------------------------------------------


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("example", EXAMPLES)
async def test_every_example_is_accepted_in_every_form(
    client: httpx.AsyncClient, auth: Auth, example: str, form: str
) -> None:
    response = await notify(client, auth, FORMS[form](fixture_json(example)))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith(FHIR_JSON)
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["severity"] == "information"
    [channel] = await channels(client, auth)
    assert channel["subscription"] == "Subscription/123"
    assert channel["form"] == form
    assert channel["health"] == "ok"


@pytest.mark.parametrize("form", FORMS)
async def test_handshake_and_heartbeat_keep_the_channel_alive_without_touching_episodes(
    client: httpx.AsyncClient, auth: Auth, form: str
) -> None:
    assert (await notify(client, auth, FORMS[form](fixture_json(HANDSHAKE)))).status_code == 200
    [after_handshake] = await channels(client, auth)
    assert after_handshake["last_heartbeat_at"] is None
    assert (await notify(client, auth, FORMS[form](fixture_json(HEARTBEAT)))).status_code == 200
    [channel] = await channels(client, auth)
    assert channel["last_heartbeat_at"] is not None
    assert channel["ehr_status"] == "active"
    # The heartbeat says 2 events happened since the handshake: both are missed and will be recovered.
    assert channel["highest_event"] == 2
    assert channel["missing_events"] == 2
    assert channel["health"] == "gap"
    assert await episodes(client, auth) == []


@pytest.mark.parametrize("form", FORMS)
async def test_full_resource_example_opens_the_stay_on_the_ward(
    client: httpx.AsyncClient, auth: Auth, form: str
) -> None:
    response = await notify(client, auth, FORMS[form](fixture_json(FULL)))
    assert response.status_code == 200, response.text
    [episode] = await episodes(client, auth)
    assert episode["state"] == "on-ward"
    assert episode["discharged_at"] is None
    [channel] = await channels(client, auth)
    # The example carries the Encounter but not its Patient: reading the Patient is queued for the worker.
    assert channel["pending_work"] == 1


@pytest.mark.parametrize("form", FORMS)
async def test_a_finished_encounter_discharges_the_stay(client: httpx.AsyncClient, auth: Auth, form: str) -> None:
    start, end = datetime(2026, 11, 2, 9, 0, tzinfo=UTC), datetime(2026, 11, 20, 15, 30, tzinfo=UTC)
    admit = event_notification(1, stay(status="in-progress", start=start))
    discharge = event_notification(2, stay(status="finished", start=start, end=end))
    assert (await notify(client, auth, FORMS[form](admit))).status_code == 200
    assert (await notify(client, auth, FORMS[form](discharge))).status_code == 200
    [episode] = await episodes(client, auth)
    assert episode["state"] == "in-community"
    assert episode["admitted_at"] == "2026-11-02T09:00:00Z"
    assert episode["discharged_at"] == "2026-11-20T15:30:00Z"


async def test_an_encounter_status_without_a_hospital_event_is_recorded_without_effect(
    client: httpx.AsyncClient, auth: Auth
) -> None:
    for number, status in enumerate(("planned", "arrived", "triaged", "cancelled", "entered-in-error"), start=1):
        response = await notify(client, auth, event_notification(number, stay(status=status)))
        assert response.status_code == 200, response.text
    assert await episodes(client, auth) == []
    [channel] = await channels(client, auth)
    assert (channel["highest_event"], channel["missing_events"]) == (5, 0)


async def test_r5_discharged_and_discontinued_also_end_the_stay(client: httpx.AsyncClient, auth: Auth) -> None:
    for number, (encounter_id, status) in enumerate((("stay-a", "discharged"), ("stay-b", "discontinued")), 1):
        encounter = r5_encounter(stay(encounter_id, "in-progress", patient_id=f"patient-{encounter_id}"))
        encounter["status"] = status
        bundle = as_r5(event_notification(number, stay(encounter_id, patient_id=f"patient-{encounter_id}")))
        bundle["entry"][1]["resource"] = encounter
        assert (await notify(client, auth, bundle)).status_code == 200
    assert {e["state"] for e in await episodes(client, auth)} == {"in-community"}


async def test_r5_encounters_are_kept_in_r4_shape_for_the_summary(
    client: httpx.AsyncClient, auth: Auth, app: FastAPI
) -> None:
    end = datetime(2026, 11, 20, 15, 30, tzinfo=UTC)
    bundle = as_r5(event_notification(1, stay(status="finished", start=end - timedelta(days=9), end=end)))
    assert (await notify(client, auth, bundle)).status_code == 200
    async with app.state.sessions() as session:  # a look at what was stored
        [stored] = [json.loads(e.encounter_json) for e in (await session.execute(select(Episode))).scalars()]
    assert stored["status"] == "finished"
    assert stored["period"]["end"] == "2026-11-20T15:30:00Z"
    assert stored["class"]["code"] == "VR"


# --- exactly once, in any order ------------------------------------------------------------------------------


async def test_the_same_event_twice_is_taken_once_and_answered_alike(client: httpx.AsyncClient, auth: Auth) -> None:
    bundle = event_notification(1)
    first = await notify(client, auth, bundle)
    again = await notify(client, auth, bundle)
    assert first.status_code == again.status_code == 200
    assert "1 applied" in first.json()["issue"][0]["diagnostics"]
    assert "1 duplicate" in again.json()["issue"][0]["diagnostics"]
    assert len(await episodes(client, auth)) == 1


@pytest.mark.parametrize("form", FORMS)
async def test_eight_identical_notifications_at_once_make_one_episode(
    client: httpx.AsyncClient, auth: Auth, form: str
) -> None:
    bundle = FORMS[form](event_notification(1, stay(status="in-progress")))
    responses = await asyncio.gather(*(notify(client, auth, bundle) for _ in range(8)))
    assert [r.status_code for r in responses] == [200] * 8, [r.text for r in responses]
    assert sum("1 applied" in r.json()["issue"][0]["diagnostics"] for r in responses) == 1
    assert len(await episodes(client, auth)) == 1
    [channel] = await channels(client, auth)
    assert (channel["highest_event"], channel["contiguous_through"], channel["missing_events"]) == (1, 1, 0)


async def test_a_discharge_before_its_admit_ends_in_the_community(client: httpx.AsyncClient, auth: Auth) -> None:
    start, end = datetime(2026, 11, 2, tzinfo=UTC), datetime(2026, 11, 9, tzinfo=UTC)
    discharge = event_notification(2, stay(status="finished", start=start, end=end))
    admit = event_notification(1, stay(status="in-progress", start=start))
    assert (await notify(client, auth, discharge)).status_code == 200
    assert (await notify(client, auth, admit)).status_code == 200
    [episode] = await episodes(client, auth)
    assert episode["state"] == "in-community"
    assert episode["discharged_at"] == "2026-11-09T00:00:00Z"
    [channel] = await channels(client, auth)
    assert channel["missing_events"] == 0  # event 1 came late, not lost


async def test_a_transfer_after_the_discharge_changes_nothing(client: httpx.AsyncClient, auth: Auth) -> None:
    start, end = datetime(2026, 11, 2, tzinfo=UTC), datetime(2026, 11, 9, tzinfo=UTC)
    await notify(client, auth, event_notification(1, stay(status="in-progress", start=start)))
    await notify(client, auth, event_notification(2, stay(status="finished", start=start, end=end)))
    moved = stay(status="in-progress", start=start, location=[{"location": {"display": "Ward 7"}}])
    assert (await notify(client, auth, event_notification(3, moved))).status_code == 200
    [episode] = await episodes(client, auth)
    assert episode["state"] == "in-community"
    assert episode["discharged_at"] == "2026-11-09T00:00:00Z"


async def test_an_older_snapshot_of_the_stay_does_not_replace_a_newer_one(
    client: httpx.AsyncClient, auth: Auth
) -> None:
    soon, later = datetime.now(UTC) + timedelta(days=3), datetime.now(UTC) + timedelta(days=5)
    newer = stay(end=later, meta={"lastUpdated": "2026-11-20T10:00:00Z"})
    older = stay(end=soon, meta={"lastUpdated": "2026-11-20T09:00:00Z"})
    await notify(client, auth, event_notification(2, newer))
    await notify(client, auth, event_notification(1, older))
    upcoming = await client.get("/api/discharges/upcoming", headers=auth(Role.COORDINATOR, "coord"))
    [item] = upcoming.json()
    assert datetime.fromisoformat(item["expected_discharge_at"]) == later


async def test_a_late_event_of_an_older_stay_does_not_become_the_current_one(
    client: httpx.AsyncClient, auth: Auth
) -> None:
    old_start, new_start = datetime(2026, 9, 1, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC)
    await notify(client, auth, event_notification(1, stay("stay-new", "in-progress", start=new_start)))
    await notify(client, auth, event_notification(2, stay("stay-old", "in-progress", start=old_start)))
    [episode] = await episodes(client, auth)
    assert episode["state"] == "on-ward"
    assert episode["admitted_at"] == "2026-11-01T00:00:00Z"


# --- who may send, and what is refused -----------------------------------------------------------------------


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"subscription_secret": SecretStr(SECRET), "max_bundle_entries": 20})


async def test_the_channel_header_alone_authenticates(client: httpx.AsyncClient, auth: Auth) -> None:
    response = await notify(client, auth, event_notification(1), headers={"X-Peerway-Channel": SECRET})
    assert response.status_code == 200, response.text
    assert len(await episodes(client, auth)) == 1


@pytest.mark.parametrize(
    ("headers_for", "status"),
    [
        (lambda auth: {}, 401),
        (lambda auth: {"X-Peerway-Channel": "wrong-secret"}, 401),
        (lambda auth: {"X-Peerway-Channel": "wrong-secret", **auth(Role.EHR_SYSTEM, "hospital")}, 401),
        (lambda auth: {"Authorization": "Bearer not.a.token"}, 401),
        (lambda auth: auth(Role.PEER, "peer-1"), 403),
        (lambda auth: auth(Role.COORDINATOR, "coord"), 403),
    ],
    ids=["nothing", "wrong-header", "wrong-header-with-token", "bad-token", "peer", "coordinator"],
)
async def test_notifications_without_the_header_or_an_ehr_token_are_refused(
    client: httpx.AsyncClient, auth: Auth, headers_for: Callable[[Auth], dict[str, str]], status: int
) -> None:
    response = await notify(client, auth, event_notification(1), headers=headers_for(auth))
    assert response.status_code == status
    assert response.json()["resourceType"] == "OperationOutcome"
    assert await episodes(client, auth) == []
    assert await channels(client, auth) == []


async def test_a_body_over_the_limit_is_413(client: httpx.AsyncClient, auth: Auth, settings: Settings) -> None:
    body = json.dumps(event_notification(1)).encode() + b" " * settings.max_body_bytes
    response = await notify(client, auth, body)
    assert response.status_code == 413
    assert response.json()["issue"][0]["code"] == "too-costly"


async def test_a_bundle_with_too_many_entries_is_422(client: httpx.AsyncClient, auth: Auth) -> None:
    bundle = event_notification(1)
    bundle["entry"] += [copy.deepcopy(bundle["entry"][1]) for _ in range(20)]
    response = await notify(client, auth, bundle)
    assert response.status_code == 422
    assert response.json()["issue"][0]["expression"] == ["Bundle.entry"]
    assert await episodes(client, auth) == []


def _parameter(name: str, value: Any) -> Mutation:
    def mutate(bundle: dict[str, Any]) -> dict[str, Any]:
        for parameter in bundle["entry"][0]["resource"]["parameter"]:
            if parameter["name"] == name:
                parameter.update(value)
        return bundle

    return mutate


def _event_part(name: str, value: dict[str, Any]) -> Mutation:
    def mutate(bundle: dict[str, Any]) -> dict[str, Any]:
        for parameter in bundle["entry"][0]["resource"]["parameter"]:
            for part in parameter.get("part", []):
                if part["name"] == name:
                    part.clear()
                    part.update({"name": name, **value})
        return bundle

    return mutate


def _set(path: tuple[Any, ...], value: Any) -> Mutation:
    def mutate(bundle: dict[str, Any]) -> dict[str, Any]:
        node = bundle
        for step in path[:-1]:
            node = node[step]
        node[path[-1]] = value
        return bundle

    return mutate


def _drop_status(bundle: dict[str, Any]) -> dict[str, Any]:
    bundle["entry"] = bundle["entry"][1:]
    return bundle


R4_PARAMETER = "Parameters.parameter.where(name='{}').{}"
R4_EVENT = "Parameters.parameter.where(name='notification-event')[0]"


@pytest.mark.parametrize(
    ("mutate", "status", "expression"),
    [
        (_set(("type",), "message"), 422, "Bundle.type"),
        (_drop_status, 422, "Bundle.entry[0]"),
        (_parameter("type", {"valueCode": "ping"}), 422, R4_PARAMETER.format("type", "valueCode")),
        (_parameter("status", {"valueCode": "sleeping"}), 422, R4_PARAMETER.format("status", "valueCode")),
        (
            _parameter("subscription", {"valueReference": {"reference": "urn:uuid:x"}}),
            422,
            R4_PARAMETER.format("subscription", "valueReference"),
        ),
        (
            _parameter("events-since-subscription-start", {"valueString": "many"}),
            422,
            R4_PARAMETER.format("events-since-subscription-start", "valueString"),
        ),
        (_event_part("event-number", {"valueString": "-3"}), 422, f"{R4_EVENT}.eventNumber"),
        (_event_part("event-number", {"valueString": str(2**70)}), 422, f"{R4_EVENT}.eventNumber"),
        (_event_part("focus", {"valueReference": {"reference": "not a reference"}}), 422, f"{R4_EVENT}.focus"),
        (_set(("entry", 1, "resource", "status"), "done"), 422, "Encounter.status"),
        (_set(("entry", 1, "resource", "id"), "x" * 65), 422, "Encounter.id"),
        (_set(("entry", 1, "resource", "subject"), {"reference": "Group/7"}), 422, "Encounter.subject"),
        (
            _set(("entry", 1, "resource", "period"), {"start": "yesterday"}),
            400,
            "Bundle.entry[1].resource.period.start",
        ),
        (_set(("entry", 0, "resource", "resourceType"), "Basic"), 400, "Bundle.entry[0].resource.code"),
    ],
)
async def test_malformed_notifications_get_an_outcome_naming_the_element_and_store_nothing(
    client: httpx.AsyncClient, auth: Auth, mutate: Mutation, status: int, expression: str
) -> None:
    response = await notify(client, auth, mutate(event_notification(1)))
    assert response.status_code == status, response.text
    issue = response.json()["issue"][0]
    assert issue["severity"] == "error"
    assert issue["expression"] == [expression]
    assert await episodes(client, auth) == []
    assert await channels(client, auth) == []


@pytest.mark.parametrize("body", [b"not json", b"[]", b"", json.dumps(fixture_json(SUBSCRIPTION)).encode()])
async def test_what_is_not_a_bundle_is_a_400(client: httpx.AsyncClient, auth: Auth, body: bytes) -> None:
    response = await notify(client, auth, body)
    assert response.status_code == 400
    assert response.json()["resourceType"] == "OperationOutcome"


async def test_the_capability_statement_names_the_notification_endpoint(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    statement = (await client.get("/fhir/metadata")).json()
    assert "POST [base]/subscription-notification" in statement["rest"][0]["documentation"]
    assert ENDPOINT in app.openapi()["paths"]


async def test_a_secret_is_needed_only_when_configured(settings: Settings, auth: Auth) -> None:
    """Without PEERWAY_SUBSCRIPTION_SECRET the header means nothing: only an ehr-system token is let in."""
    unset = create_app(settings.model_copy(update={"subscription_secret": None}))
    async with (
        unset.router.lifespan_context(unset),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=unset), base_url="http://peerway.test") as client,
    ):
        response = await notify(client, auth, event_notification(1), headers={"X-Peerway-Channel": SECRET})
        assert response.status_code == 401
        assert (await notify(client, auth, event_notification(1))).status_code == 200


async def test_a_restarted_subscription_counts_from_one_again(client: httpx.AsyncClient, auth: Auth) -> None:
    for number in (1, 2):
        await notify(client, auth, event_notification(number, stay(f"stay-{number}", patient_id=f"p-{number}")))
    assert (await notify(client, auth, fixture_json(HANDSHAKE))).status_code == 200  # counting from 0 again
    again = await notify(client, auth, event_notification(1, stay("stay-3", patient_id="p-3")))
    assert "1 applied" in again.json()["issue"][0]["diagnostics"]
    assert len(await episodes(client, auth)) == 3
    [channel] = await channels(client, auth)
    assert (channel["highest_event"], channel["missing_events"]) == (1, 0)


async def test_a_notification_declared_as_xml_is_415_and_opens_no_channel(
    client: httpx.AsyncClient, auth: Auth
) -> None:
    """A channel set up with an XML payload is told at its handshake that this endpoint takes FHIR JSON only."""
    response = await client.post(
        ENDPOINT,
        content=json.dumps(fixture_json(HANDSHAKE)).encode(),
        headers=auth(Role.EHR_SYSTEM, "hospital", **{"Content-Type": "application/fhir+xml"}),
    )
    assert response.status_code == 415, response.text
    assert response.json()["issue"][0]["expression"] == ["Content-Type"]
    assert await channels(client, auth) == []
