"""Da Vinci notifications in: episodes open and move, replays are answered once, bad input is a clear 4xx."""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from service.app.sites import SiteSpec, update_site
from service.auth import Role
from service.domain.stay import DAVINCI_EVENT_CODES, HospitalEventKind
from service.fhir.parse import DAVINCI_EVENT_SYSTEM as DAVINCI_SYSTEM
from service.store.db import create_engine, session_factory
from tests.conftest import fixture_json

ADMIT = "davinci/davinci-alerts-admit-notification-message-bundle-01.json"
TRANSFER = "davinci/davinci-alerts-transfer-notification-message-bundle-01.json"
DISCHARGE = "davinci/davinci-alerts-discharge-notification-message-bundle-01.json"
FHIR_JSON = "application/fhir+json"

Auth = Callable[..., dict[str, str]]


async def send(client: httpx.AsyncClient, auth: Auth, bundle: dict[str, Any] | bytes) -> httpx.Response:
    body = bundle if isinstance(bundle, bytes) else json.dumps(bundle).encode()
    return await client.post(
        "/fhir/$process-message",
        content=body,
        headers=auth(Role.EHR_SYSTEM, "hospital", **{"Content-Type": FHIR_JSON}),
    )


async def episodes(client: httpx.AsyncClient, auth: Auth) -> list[dict[str, Any]]:
    response = await client.get("/api/episodes", headers=auth(Role.COORDINATOR, "coord"))
    assert response.status_code == 200
    result: list[dict[str, Any]] = response.json()
    return result


async def test_discharge_example_is_accepted_with_an_ehr_token(client: httpx.AsyncClient, auth: Auth) -> None:
    response = await send(client, auth, fixture_json(DISCHARGE))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(FHIR_JSON)
    assert response.json()["resourceType"] == "OperationOutcome"
    [episode] = await episodes(client, auth)
    assert episode["state"] == "in-community"
    assert episode["discharged_at"] == "2018-10-24T05:22:15Z"
    assert episode["discharge_disposition"] == "1"


async def test_discharge_example_is_refused_without_a_token(client: httpx.AsyncClient, auth: Auth) -> None:
    response = await client.post(
        "/fhir/$process-message", json=fixture_json(DISCHARGE), headers={"Content-Type": FHIR_JSON}
    )
    assert response.status_code == 401
    assert response.headers["content-type"].startswith(FHIR_JSON)
    assert response.json()["issue"][0]["code"] == "login"
    assert await episodes(client, auth) == []


async def test_only_an_ehr_system_may_send_events(client: httpx.AsyncClient, auth: Auth) -> None:
    for role in (Role.PEER, Role.COORDINATOR):
        response = await client.post(
            "/fhir/$process-message", json=fixture_json(DISCHARGE), headers=auth(role, "someone")
        )
        assert response.status_code == 403
    assert await episodes(client, auth) == []


async def test_admit_opens_on_ward_and_discharge_moves_to_community(client: httpx.AsyncClient, auth: Auth) -> None:
    assert (await send(client, auth, fixture_json(ADMIT))).status_code == 200
    [episode] = await episodes(client, auth)
    assert episode["state"] == "on-ward"
    assert episode["discharged_at"] is None
    assert (await send(client, auth, fixture_json(TRANSFER))).status_code == 200
    assert (await send(client, auth, fixture_json(DISCHARGE))).status_code == 200
    [moved] = await episodes(client, auth)
    assert moved["id"] == episode["id"]
    assert moved["state"] == "in-community"
    assert moved["discharged_at"] == "2018-10-24T05:22:15Z"


async def test_same_bundle_twice_is_processed_once_with_the_same_answer(client: httpx.AsyncClient, auth: Auth) -> None:
    admit = fixture_json(ADMIT)
    first = await send(client, auth, admit)
    await send(client, auth, fixture_json(DISCHARGE))
    # The admit replayed after the discharge must not pull the client back onto the ward.
    again = await send(client, auth, admit)
    assert again.status_code == first.status_code == 200
    assert again.json() == first.json()
    [episode] = await episodes(client, auth)
    assert episode["state"] == "in-community"


async def test_late_admit_with_a_new_id_does_not_undo_a_discharge(client: httpx.AsyncClient, auth: Auth) -> None:
    await send(client, auth, fixture_json(DISCHARGE))
    late = fixture_json(ADMIT)
    late["id"] = "admit-arriving-late"
    assert (await send(client, auth, late)).status_code == 200
    [episode] = await episodes(client, auth)
    assert episode["state"] == "in-community"


def _without_header(bundle: dict[str, Any]) -> dict[str, Any]:
    bundle["entry"] = bundle["entry"][1:]
    return bundle


def _focus_missing(bundle: dict[str, Any]) -> dict[str, Any]:
    bundle["entry"][0]["resource"]["focus"] = [{"reference": "urn:uuid:not-in-this-bundle"}]
    return bundle


def _status_done(bundle: dict[str, Any]) -> dict[str, Any]:
    bundle["entry"][1]["resource"]["status"] = "done"
    return bundle


def _bad_date(bundle: dict[str, Any]) -> dict[str, Any]:
    bundle["entry"][1]["resource"]["period"]["start"] = "yesterday"
    return bundle


def _history(bundle: dict[str, Any]) -> dict[str, Any]:
    bundle["type"] = "history"
    return bundle


def _no_id(bundle: dict[str, Any]) -> dict[str, Any]:
    del bundle["id"]
    return bundle


def _other_event_system(bundle: dict[str, Any]) -> dict[str, Any]:
    bundle["entry"][0]["resource"]["eventCoding"]["system"] = "http://example.org/events"
    return bundle


def _no_event(bundle: dict[str, Any]) -> dict[str, Any]:
    del bundle["entry"][0]["resource"]["eventCoding"]
    return bundle


def _subject_missing(bundle: dict[str, Any]) -> dict[str, Any]:
    bundle["entry"][1]["resource"]["subject"] = {"reference": "Patient/elsewhere"}
    return bundle


def _patient_not_a_bundle(bundle: dict[str, Any]) -> dict[str, Any]:
    return bundle["entry"][2]["resource"]  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("mutate", "status", "expression"),
    [
        (_without_header, 422, "Bundle.entry[0]"),
        (_focus_missing, 422, "MessageHeader.focus[0]"),
        (_status_done, 422, "Encounter.status"),
        (_bad_date, 400, "Bundle.entry[1].resource.period.start"),
        (_history, 422, "Bundle.type"),
        (_no_id, 422, "Bundle.id"),
        (_subject_missing, 422, "Encounter.subject"),
        (_no_event, 400, "Bundle.entry[0].resource"),
        (_patient_not_a_bundle, 400, "resourceType"),
    ],
)
async def test_malformed_notifications_get_an_outcome_naming_the_element_and_store_nothing(
    client: httpx.AsyncClient,
    auth: Auth,
    mutate: Callable[[dict[str, Any]], dict[str, Any]],
    status: int,
    expression: str,
) -> None:
    response = await send(client, auth, mutate(copy.deepcopy(fixture_json(DISCHARGE))))
    assert response.status_code == status, response.text
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["severity"] == "error"
    assert outcome["issue"][0]["expression"] == [expression]
    assert await episodes(client, auth) == []


async def test_an_entry_intake_does_not_read_is_not_held_against_the_message(
    client: httpx.AsyncClient, auth: Auth
) -> None:
    # Only the MessageHeader, the focus Encounter and its Patient are read (and validated); a Condition the
    # sender got wrong does not cost the discharge, while a damaged Patient still names its element.
    bundle = copy.deepcopy(fixture_json(DISCHARGE))
    [condition] = [e for e in bundle["entry"] if e["resource"]["resourceType"] == "Condition"]
    condition["resource"]["onsetDateTime"] = "not a date"
    assert (await send(client, auth, bundle)).status_code == 200
    [episode] = await episodes(client, auth)
    assert episode["state"] == "in-community"

    damaged = copy.deepcopy(fixture_json(DISCHARGE))
    damaged["id"] = "another-message"
    damaged["entry"][2]["resource"]["birthDate"] = "not a date"
    response = await send(client, auth, damaged)
    assert response.status_code == 400, response.text
    assert response.json()["issue"][0]["expression"] == ["Bundle.entry[2].resource.birthDate"]


@pytest.mark.parametrize("body", [b"not json at all", b"[1, 2]", b"\xff\xfe", b""])
async def test_non_json_is_a_400_outcome(client: httpx.AsyncClient, auth: Auth, body: bytes) -> None:
    response = await send(client, auth, body)
    assert response.status_code == 400
    assert response.json()["resourceType"] == "OperationOutcome"
    assert await episodes(client, auth) == []


async def test_a_body_over_the_limit_is_413(client: httpx.AsyncClient, auth: Auth, settings: Any) -> None:
    padding = " " * (settings.max_body_bytes + 1)
    response = await send(client, auth, json.dumps(fixture_json(DISCHARGE)).encode() + padding.encode())
    assert response.status_code == 413
    assert response.json()["issue"][0]["code"] == "too-costly"


async def test_a_discharge_dated_by_day_only_is_read_as_that_day(client: httpx.AsyncClient, auth: Auth) -> None:
    bundle = fixture_json(DISCHARGE)
    bundle["entry"][1]["resource"]["period"] = {"start": "2018-10", "end": "2018-10-23"}
    assert (await send(client, auth, bundle)).status_code == 200
    [episode] = await episodes(client, auth)
    assert episode["discharged_at"] == "2018-10-23T00:00:00Z"
    assert episode["admitted_at"] == "2018-10-01T00:00:00Z"


async def test_other_davinci_events_are_acknowledged_without_effect(client: httpx.AsyncClient, auth: Auth) -> None:
    bundle = fixture_json(ADMIT)
    bundle["entry"][0]["resource"]["eventCoding"]["code"] = "notification-referral"
    response = await send(client, auth, bundle)
    assert response.status_code == 200
    assert await episodes(client, auth) == []


# A conformant sender stops after a 4xx (Da Vinci Unsolicited Notifications): an event Peerway does not act on,
# whatever its code or system, is acknowledged (200), changes nothing, and is recorded (a replay gets the same
# answer); it needs no focus, since nothing is read from it.
@pytest.mark.parametrize(
    ("header", "code"),
    [
        ({"eventCoding": {"system": "http://example.org/events", "code": "notification-discharge"}}, None),
        ({"eventCoding": {"system": DAVINCI_SYSTEM, "code": "notification-readmit"}}, None),
        ({"eventCoding": {"system": "http://example.org/events", "code": "x" * 80}}, "x" * 64),
        ({"eventUri": "http://example.org/events/bed-moved"}, None),
        ({"eventCoding": {"code": "notification-admit"}}, None),
    ],
    ids=["another-system", "code-outside-the-ig", "long-code", "event-uri", "no-system"],
)
async def test_an_event_peerway_does_not_act_on_is_acknowledged_and_recorded(
    client: httpx.AsyncClient, auth: Auth, header: dict[str, Any], code: str | None
) -> None:
    bundle = fixture_json(DISCHARGE)
    message = bundle["entry"][0]["resource"]
    message.pop("eventCoding")
    message.pop("focus")  # nothing is read from an event Peerway does not act on
    message.update(header)
    sent = code or next(iter(header.values()))
    sent = sent if isinstance(sent, str) else sent["code"]
    response = await send(client, auth, bundle)
    assert response.status_code == 200, response.text
    assert response.json()["issue"][0]["diagnostics"] == f"{sent}: acknowledged; no change to any episode"
    assert await episodes(client, auth) == []
    changed = {k: v for k, v in message.items() if k not in header} | {"eventUri": "http://example.org/changed"}
    bundle["entry"][0]["resource"] = changed
    assert (await send(client, auth, bundle)).json() == response.json()  # recorded: a replay gets the same answer


async def test_eight_copies_at_once_make_one_episode_and_get_one_answer(client: httpx.AsyncClient, auth: Auth) -> None:
    bundle = fixture_json(ADMIT)
    responses = await asyncio.gather(*(send(client, auth, bundle) for _ in range(8)))
    assert {r.status_code for r in responses} == {200}
    assert len({r.text for r in responses}) == 1
    assert len(await episodes(client, auth)) == 1


OTHER_DAVINCI_CODES = sorted(DAVINCI_EVENT_CODES - {k.value for k in HospitalEventKind})


@pytest.mark.parametrize("code", OTHER_DAVINCI_CODES)
async def test_every_other_code_of_the_ig_is_acknowledged_and_recorded_without_effect(
    client: httpx.AsyncClient, auth: Auth, code: str
) -> None:
    bundle = fixture_json(DISCHARGE)
    bundle["entry"][0]["resource"]["eventCoding"]["code"] = code
    response = await send(client, auth, bundle)
    assert response.status_code == 200
    assert response.json()["issue"][0]["diagnostics"] == f"{code}: acknowledged; no change to any episode"
    assert await episodes(client, auth) == []
    assert (await send(client, auth, bundle)).json() == response.json()  # recorded: a replay gets the same answer


def test_the_ig_code_list_is_complete() -> None:
    assert len(DAVINCI_EVENT_CODES) == 23  # CodeSystem notification-event 1.0.0 ("count": 23 concepts listed)
    assert {k.value for k in HospitalEventKind} <= DAVINCI_EVENT_CODES


@pytest.mark.parametrize(
    ("mutate", "expression"),
    [
        (lambda b: b.update(id="b" * 65), "Bundle.id"),
        (lambda b: b["entry"][1]["resource"].update(id="e" * 65), "Encounter.id"),
        (lambda b: b["entry"].extend([b["entry"][-1]] * 200), "Bundle.entry"),
    ],
    ids=["bundle-id-too-long", "encounter-id-too-long", "too-many-entries"],
)
async def test_what_the_ig_does_not_allow_is_a_422_naming_the_element(
    client: httpx.AsyncClient, auth: Auth, mutate: Callable[[dict[str, Any]], None], expression: str
) -> None:
    bundle = fixture_json(DISCHARGE)
    mutate(bundle)
    response = await send(client, auth, bundle)
    assert response.status_code == 422, response.text
    assert response.json()["issue"][0]["expression"] == [expression]
    assert await episodes(client, auth) == []


async def test_the_answer_names_the_client_and_episode_a_coordinator_goes_on_with(
    client: httpx.AsyncClient, auth: Auth
) -> None:
    admitted = await send(client, auth, fixture_json(ADMIT))
    [episode] = await episodes(client, auth)
    said = admitted.json()["issue"][0]["diagnostics"]
    assert said.endswith(f"episode opened on the ward (client {episode['client_id']}, episode {episode['id']})")
    discharged = (await send(client, auth, fixture_json(DISCHARGE))).json()["issue"][0]["diagnostics"]
    assert discharged.endswith(
        f"episode moved to the community (client {episode['client_id']}, episode {episode['id']})"
    )


async def test_a_site_disabled_by_another_process_is_refused_its_next_message_at_once(
    client: httpx.AsyncClient, auth: Auth, settings: Any
) -> None:
    # The `peerway site` command runs in a process of its own: its own engine, nothing shared with the server.
    engine = create_engine(settings.database_url)
    elsewhere = session_factory(engine)
    try:
        admit = fixture_json(ADMIT)
        assert (await send(client, auth, admit)).status_code == 200  # the token is taken while the site is active
        await update_site(elsewhere, "default", SiteSpec(status="disabled"))
        refused = await send(client, auth, fixture_json(DISCHARGE))
        assert refused.status_code == 403, refused.text
        assert "disabled" in refused.json()["issue"][0]["diagnostics"]
        replayed = await send(client, auth, admit)  # not even the answer it got before
        assert replayed.status_code == 403, replayed.text
        [episode] = await episodes(client, auth)
        assert episode["state"] == "on-ward"

        await update_site(elsewhere, "default", SiteSpec(status="active"))
        assert (await send(client, auth, fixture_json(DISCHARGE))).status_code == 200
        [moved] = await episodes(client, auth)
        assert moved["state"] == "in-community"
    finally:
        await engine.dispose()


@pytest.mark.parametrize(
    "content_type", ["application/fhir+xml", "application/xml", "text/plain", "application/x-www-form-urlencoded"]
)
async def test_a_message_declared_in_another_format_is_415_and_changes_nothing(
    client: httpx.AsyncClient, auth: Auth, content_type: str
) -> None:
    """Even when the bytes are JSON: a sender that says XML is told this server takes FHIR JSON only, not guessed
    at (R4 http.html: 415 for a format the server does not support)."""
    response = await client.post(
        "/fhir/$process-message",
        content=json.dumps(fixture_json(DISCHARGE)).encode(),
        headers=auth(Role.EHR_SYSTEM, "hospital", **{"Content-Type": content_type}),
    )
    assert response.status_code == 415, response.text
    [issue] = response.json()["issue"]
    assert (issue["code"], issue["expression"]) == ("not-supported", ["Content-Type"])
    assert await episodes(client, auth) == []


@pytest.mark.parametrize("content_type", [None, "application/json", "application/fhir+json; charset=utf-8"])
async def test_a_message_declared_as_json_or_undeclared_is_read_as_json(
    client: httpx.AsyncClient, auth: Auth, content_type: str | None
) -> None:
    headers = auth(Role.EHR_SYSTEM, "hospital")
    if content_type is not None:
        headers["Content-Type"] = content_type
    body = json.dumps(fixture_json(DISCHARGE)).encode()
    response = await client.post("/fhir/$process-message", content=body, headers=headers)
    assert response.status_code == 200, response.text
    [episode] = await episodes(client, auth)
    assert episode["state"] == "in-community"
