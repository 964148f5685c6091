"""Hostile and nonsense input (issue 14): each case is a 4xx OperationOutcome naming the element, stores nothing,
and is never a 5xx — deep nesting, huge numbers and strings, ids that are not FHIR ids, and values that parse
but mean nothing (a period ending before it starts, an entry without its type, an id-only event without a focus).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from service.auth import Role
from service.store import channel as channel_store
from tests.api.test_schema_never_5xx import row_counts
from tests.api.test_subscriptions import event_notification, stay
from tests.conftest import fixture_json
from tests.support.consents import peer_consent
from tests.support.flow import discharged_client_with_peer, peer_contact

Auth = Callable[..., dict[str, str]]
FHIR_JSON = "application/fhir+json"
DISCHARGE = "davinci/davinci-alerts-discharge-notification-message-bundle-01.json"
ENCOUNTER, PATIENT = 1, 2  # entries of the discharge example

# Every endpoint that reads a JSON body, with the role that may call it.
JSON_ENDPOINTS = [
    ("POST", "/fhir/$process-message", Role.EHR_SYSTEM),
    ("POST", "/fhir/subscription-notification", Role.EHR_SYSTEM),
    ("POST", "/fhir/Consent", Role.COORDINATOR),
    ("PUT", "/fhir/Consent/some-id", Role.COORDINATOR),
    ("POST", "/fhir/Encounter", Role.PEER),
    ("POST", "/api/peers", Role.COORDINATOR),
    ("PUT", "/api/peers/some-id/profile", Role.COORDINATOR),
    ("POST", "/cds-services/patient-consent-consult", Role.COORDINATOR),
]


async def refused(
    app: FastAPI, client: httpx.AsyncClient, method: str, url: str, body: bytes, headers: dict[str, str]
) -> dict[str, Any]:
    """Send `body`; assert a 4xx OperationOutcome that stored nothing; answer its first issue."""
    before = await row_counts(app)
    response = await client.request(method, url, content=body, headers={"Content-Type": FHIR_JSON, **headers})
    assert 400 <= response.status_code < 500, response.text[:500]
    assert response.headers["content-type"].startswith(FHIR_JSON)
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["severity"] == "error"
    assert await row_counts(app) == before
    issue: dict[str, Any] = outcome["issue"][0]
    return issue


def discharge_with(change: Callable[[dict[str, Any]], object]) -> bytes:
    bundle = copy.deepcopy(fixture_json(DISCHARGE))
    change(bundle)
    return json.dumps(bundle).encode()


def nested_extension(levels: int) -> dict[str, Any]:
    extension: dict[str, Any] = {"url": "http://example.org/leaf", "valueString": "x"}
    for _ in range(levels - 1):
        extension = {"url": "http://example.org/branch", "extension": [extension]}
    return extension


def nested_provision(levels: int) -> dict[str, Any]:
    provision: dict[str, Any] = {"type": "deny"}
    for _ in range(levels - 1):
        provision = {"type": "permit", "provision": [provision]}
    return provision


# --- 1. nesting depth ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "url", "role"), JSON_ENDPOINTS)
@pytest.mark.parametrize(
    "body",
    [
        b"[" * 1000 + b"]" * 1000,
        b'{"resourceType":"Bundle","a":' * 500 + b"1" + b"}" * 500,
        b'{"name":' + b'{"a":' * 500 + b'"\\u0000"' + b"}" * 501,  # the U+0000 check once recursed down there
        b"[" * 100_000,  # not even JSON
    ],
    ids=["arrays-1000-deep", "objects-500-deep", "nul-500-deep", "unclosed-100000"],
)
async def test_a_body_nested_too_deep_is_refused_before_it_is_parsed(
    app: FastAPI, client: httpx.AsyncClient, auth: Auth, method: str, url: str, role: Role, body: bytes
) -> None:
    issue = await refused(app, client, method, url, body, auth(role))
    assert issue["diagnostics"] == "the JSON is nested deeper than 64 levels"
    assert issue["expression"][0].endswith(("[0]", ".a", ".name"))


@pytest.mark.parametrize(("method", "url", "role"), JSON_ENDPOINTS)
@pytest.mark.parametrize(
    "body",
    [b"[" * 1000 + b"]" * 1000, b'{"a":' * 500 + b'"\\u0000"' + b"}" * 500, b'{"n":' + b"9" * 5000 + b"}"],
    ids=["arrays-1000-deep", "nul-500-deep", "5000-digits"],
)
async def test_without_credentials_a_hostile_body_is_not_read_and_gets_no_5xx(
    app: FastAPI, client: httpx.AsyncClient, method: str, url: str, role: Role, body: bytes
) -> None:
    """No token, no scan (service/api/bodies.py): the route refuses first, or FastAPI cannot parse it."""
    before = await row_counts(app)
    response = await client.request(method, url, content=body, headers={"Content-Type": "application/json"})
    assert response.status_code in (400, 401), response.text
    assert response.json()["resourceType"] == "OperationOutcome"
    assert await row_counts(app) == before


@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded", "text/plain", "multipart/form-data"])
async def test_a_deep_body_is_refused_whatever_its_content_type_says(
    app: FastAPI, client: httpx.AsyncClient, auth: Auth, content_type: str
) -> None:
    headers = auth(Role.EHR_SYSTEM, "hospital", **{"Content-Type": content_type})
    body = b'{"resourceType":"Bundle","entry":' + b"[" * 900 + b"]" * 900 + b"}"
    issue = await refused(app, client, "POST", "/fhir/$process-message", body, headers)
    assert issue["diagnostics"] == "the JSON is nested deeper than 64 levels"


async def test_extensions_nested_150_deep_are_refused_naming_where(
    app: FastAPI, client: httpx.AsyncClient, auth: Auth
) -> None:
    body = discharge_with(lambda b: b["entry"][PATIENT]["resource"].update(extension=[nested_extension(150)]))
    issue = await refused(app, client, "POST", "/fhir/$process-message", body, auth(Role.EHR_SYSTEM, "hospital"))
    assert issue["expression"][0].startswith("Bundle.entry[2].resource.extension[0].extension[0].extension[0]")


@pytest.mark.parametrize("levels", [200, 300])
@pytest.mark.parametrize(
    "encode",
    [lambda b: b"\xef\xbb\xbf" + b, lambda b: b.decode().encode("utf-16"), lambda b: b.decode().encode("utf-16-be")],
    ids=["utf-8-bom", "utf-16", "utf-16-be"],
)  # fmt: skip
async def test_deep_extensions_are_refused_in_any_encoding_json_reads(
    app: FastAPI, client: httpx.AsyncClient, auth: Auth, encode: Callable[[bytes], bytes], levels: int
) -> None:
    """json.loads reads a body led by a byte order mark (and UTF-16 ones): the shape check reads it so too. A BOM
    once let this body past it, and its extensions reached a recursive check: a 500."""
    body = discharge_with(lambda b: b["entry"][PATIENT]["resource"].update(extension=[nested_extension(levels)]))
    headers = auth(Role.EHR_SYSTEM, "hospital")
    issue = await refused(app, client, "POST", "/fhir/$process-message", encode(body), headers)
    assert issue["diagnostics"] == "the JSON is nested deeper than 64 levels"
    assert issue["expression"][0].startswith("Bundle.entry[2].resource.extension[0].extension[0]")


async def test_a_body_led_by_a_byte_order_mark_is_read(client: httpx.AsyncClient, auth: Auth) -> None:
    body = b"\xef\xbb\xbf" + discharge_with(lambda b: None)
    response = await client.post("/fhir/$process-message", content=body, headers=auth(Role.EHR_SYSTEM, "hospital"))
    assert response.status_code == 200, response.text


async def test_extensions_nested_as_deep_as_real_ones_are_read(client: httpx.AsyncClient, auth: Auth) -> None:
    body = discharge_with(lambda b: b["entry"][PATIENT]["resource"].update(extension=[nested_extension(20)]))
    response = await client.post("/fhir/$process-message", content=body, headers=auth(Role.EHR_SYSTEM, "hospital"))
    assert response.status_code == 200, response.text


async def test_consent_provisions_nested_120_deep_are_refused(
    app: FastAPI, client: httpx.AsyncClient, auth: Auth
) -> None:
    consent = peer_consent("Patient/someone", ["admission-discharge"])
    consent["provision"]["provision"] = [nested_provision(120)]
    issue = await refused(app, client, "POST", "/fhir/Consent", json.dumps(consent).encode(), auth(Role.COORDINATOR))
    assert issue["expression"][0].startswith("Consent.provision.provision[0].provision[0]")


# --- 2. numbers, strings and ids past what any element holds ----------------------------------------------------


@pytest.mark.parametrize(("method", "url", "role"), JSON_ENDPOINTS)
async def test_an_integer_of_thousands_of_digits_is_refused(
    app: FastAPI, client: httpx.AsyncClient, auth: Auth, method: str, url: str, role: Role
) -> None:
    body = b'{"resourceType":"Bundle","name":"x","total":' + b"9" * 5000 + b"}"
    issue = await refused(app, client, method, url, body, auth(role))
    assert issue["expression"] == ["Bundle.total"]
    assert "number longer than 40 characters" in issue["diagnostics"]


async def test_a_decimal_of_thousands_of_digits_in_a_contact_is_refused(
    app: FastAPI, client: httpx.AsyncClient, auth: Auth
) -> None:
    episode, peer = await discharged_client_with_peer(client, auth)
    contact = json.dumps(peer_contact(episode["client_id"])).replace('"value": 60', '"value": 6' + "0" * 3000)
    issue = await refused(app, client, "POST", "/fhir/Encounter", contact.encode(), auth(Role.PEER, peer["id"]))
    assert issue["expression"] == ["Encounter.length.value"]


async def test_a_megabyte_name_is_refused_naming_the_element(
    app: FastAPI, client: httpx.AsyncClient, auth: Auth
) -> None:
    body = discharge_with(lambda b: b["entry"][PATIENT]["resource"]["name"][0].update(family="N" * 1_000_000))
    issue = await refused(app, client, "POST", "/fhir/$process-message", body, auth(Role.EHR_SYSTEM, "hospital"))
    assert issue == {
        "severity": "error",
        "code": "too-long",
        "diagnostics": "Bundle.entry[2].resource.name[0].family: text longer than 4096 characters",
        "expression": ["Bundle.entry[2].resource.name[0].family"],
    }


async def test_a_long_name_in_an_api_body_is_refused_naming_the_field(
    app: FastAPI, client: httpx.AsyncClient, auth: Auth
) -> None:
    body = json.dumps({"name": "é" * 5000}).encode()
    issue = await refused(app, client, "POST", "/api/peers", body, auth(Role.COORDINATOR))
    assert issue["expression"] == ["body.name"]


async def test_an_attachment_of_half_a_megabyte_is_kept_but_a_larger_resource_is_not(
    app: FastAPI, client: httpx.AsyncClient, auth: Auth
) -> None:
    photo = {"contentType": "image/png", "data": "QUJD" * 150_000}  # 600 kB of base64: an Attachment may
    accepted = discharge_with(lambda b: b["entry"][PATIENT]["resource"].update(photo=[photo]))
    headers = auth(Role.EHR_SYSTEM, "hospital")
    too_big = discharge_with(lambda b: b["entry"][PATIENT]["resource"].update(photo=[photo] * 4, id="other"))
    issue = await refused(app, client, "POST", "/fhir/$process-message", too_big, headers)
    assert issue["expression"] == ["Patient"]  # the copy Peerway keeps of one resource is at most 2 MiB
    response = await client.post("/fhir/$process-message", content=accepted, headers=headers)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("change", "expression"),
    [
        (lambda b: b["entry"][PATIENT]["resource"].update(id="."), "Patient.id"),
        (lambda b: b["entry"][ENCOUNTER]["resource"].update(id=".."), "Encounter.id"),
        (lambda b: b.update(id=".."), "Bundle.id"),
    ],
    ids=["patient-dot", "encounter-dot-dot", "bundle-dot-dot"],
)
async def test_ids_that_are_path_segments_are_refused(
    app: FastAPI, client: httpx.AsyncClient, auth: Auth, change: Callable[[dict[str, Any]], object], expression: str
) -> None:
    headers = auth(Role.EHR_SYSTEM, "hospital")
    issue = await refused(app, client, "POST", "/fhir/$process-message", discharge_with(change), headers)
    assert issue["expression"] == [expression]


@pytest.mark.parametrize("bad", ["..", ".", "a_b", "x" * 65, "a b"])
async def test_an_id_only_event_about_a_non_id_is_refused_before_anything_is_queued(
    app: FastAPI, client: httpx.AsyncClient, auth: Auth, bad: str
) -> None:
    bundle = event_notification(1, stay(), payload="id-only")
    for part in bundle["entry"][0]["resource"]["parameter"][-1]["part"]:
        if part["name"] == "focus":
            part["valueReference"]["reference"] = f"https://fhirserver.org/fhir/Encounter/{bad}"
    headers = auth(Role.EHR_SYSTEM, "hospital")
    issue = await refused(app, client, "POST", "/fhir/subscription-notification", json.dumps(bundle).encode(), headers)
    assert issue["expression"] == ["Parameters.parameter.where(name='notification-event')[0].focus"]


@pytest.mark.parametrize("bad", ["..", "a_b", "x" * 65])
async def test_a_contact_about_a_non_id_is_refused(
    app: FastAPI, client: httpx.AsyncClient, auth: Auth, bad: str
) -> None:
    _, peer = await discharged_client_with_peer(client, auth)
    body = json.dumps(peer_contact(bad)).encode()
    issue = await refused(app, client, "POST", "/fhir/Encounter", body, auth(Role.PEER, peer["id"]))
    assert issue["expression"] == ["Encounter.subject"]


@pytest.mark.parametrize(
    ("url", "role", "name"),
    [
        ("/fhir/Consent/a_b", Role.COORDINATOR, "consent_id"),
        ("/fhir/Consent/%2E%2E", Role.COORDINATOR, "consent_id"),
        ("/fhir/Encounter/" + "x" * 65, Role.PEER, "contact_id"),
        ("/fhir/Practitioner/a%20b", Role.COORDINATOR, "peer_id"),
        ("/fhir/Patient/a:b/$peer-summary", Role.PEER, "client_id"),
    ],
)
async def test_a_path_id_that_is_not_a_fhir_id_is_a_400_naming_it(
    client: httpx.AsyncClient, auth: Auth, url: str, role: Role, name: str
) -> None:
    response = await client.get(url, headers=auth(role))
    assert response.status_code == 400, response.text
    assert response.json()["issue"][0]["expression"] == [f"path.{name}"]


# --- 3. meaning, not just shape ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "expression"),
    [
        (
            lambda b: b["entry"][ENCOUNTER]["resource"].update(
                period={"start": "2018-10-23T22:22:15-07:00", "end": "2018-10-21T21:22:15-07:00"}
            ),
            "Bundle.entry[1].resource.period",
        ),
        (
            lambda b: b["entry"][ENCOUNTER]["resource"].update(period={"start": "2018-10-22", "end": "2018-10-21"}),
            "Bundle.entry[1].resource.period",
        ),
        (lambda b: b["entry"][PATIENT]["resource"].pop("resourceType"), "Bundle.entry[2].resource.resourceType"),
        (lambda b: b["entry"][3]["resource"].pop("resourceType"), "Bundle.entry[3].resource.resourceType"),
    ],
    ids=["discharged-before-admitted", "by-day", "patient-without-type", "location-without-type"],
)
async def test_a_notification_that_means_nothing_is_refused_naming_the_element(
    app: FastAPI, client: httpx.AsyncClient, auth: Auth, change: Callable[[dict[str, Any]], object], expression: str
) -> None:
    headers = auth(Role.EHR_SYSTEM, "hospital")
    issue = await refused(app, client, "POST", "/fhir/$process-message", discharge_with(change), headers)
    assert issue["expression"] == [expression]


async def test_a_period_ending_within_its_first_month_is_not_refused(client: httpx.AsyncClient, auth: Auth) -> None:
    period = {"start": "2018-10-21T21:22:15-07:00", "end": "2018-10"}  # FHIR ends are inclusive
    body = discharge_with(lambda b: b["entry"][ENCOUNTER]["resource"].update(period=period))
    response = await client.post("/fhir/$process-message", content=body, headers=auth(Role.EHR_SYSTEM, "hospital"))
    assert response.status_code == 200, response.text


async def test_a_contact_that_ends_before_it_starts_is_refused(
    app: FastAPI, client: httpx.AsyncClient, auth: Auth
) -> None:
    episode, peer = await discharged_client_with_peer(client, auth)
    contact = peer_contact(episode["client_id"])
    contact["period"]["start"], contact["period"]["end"] = contact["period"]["end"], contact["period"]["start"]
    body = json.dumps(contact).encode()
    issue = await refused(app, client, "POST", "/fhir/Encounter", body, auth(Role.PEER, peer["id"]))
    assert issue["expression"] == ["Encounter.period"]


async def test_a_consent_whose_provision_ends_before_it_starts_is_refused(
    app: FastAPI, client: httpx.AsyncClient, auth: Auth
) -> None:
    episode, _ = await discharged_client_with_peer(client, auth)
    consent = peer_consent(f"Patient/{episode['client_id']}", ["admission-discharge"])
    period = consent["provision"]["period"]
    period["start"], period["end"] = period["end"], period["start"]
    body = json.dumps(consent).encode()
    issue = await refused(app, client, "POST", "/fhir/Consent", body, auth(Role.COORDINATOR))
    assert issue["expression"] == ["Consent.provision.period"]


async def test_an_id_only_event_without_a_focus_is_not_taken_for_an_empty_one(
    app: FastAPI, client: httpx.AsyncClient, auth: Auth
) -> None:
    """The notification carries the Encounter's entry (id-only), but its event names no focus: today's reading
    as an empty notification queued a search of every Encounter the EHR changed since the event's time."""
    bundle = event_notification(1, stay(), payload="id-only")
    event = bundle["entry"][0]["resource"]["parameter"][-1]
    event["part"] = [part for part in event["part"] if part["name"] != "focus"]
    headers = auth(Role.EHR_SYSTEM, "hospital")
    issue = await refused(app, client, "POST", "/fhir/subscription-notification", json.dumps(bundle).encode(), headers)
    assert issue["expression"] == ["Parameters.parameter.where(name='notification-event')[0].focus"]


async def test_an_event_without_a_focus_on_a_channel_peerway_asked_ids_of_is_refused(
    app: FastAPI, client: httpx.AsyncClient, auth: Auth
) -> None:
    """Peerway created this Subscription with id-only payloads: an event without a focus is a broken one."""
    handshake = await client.post(
        "/fhir/subscription-notification",
        content=json.dumps(fixture_json("backport/backport-r4-handshake_bundle_example.json")).encode(),
        headers=auth(Role.EHR_SYSTEM, "hospital"),
    )
    assert handshake.status_code == 200, handshake.text
    async with app.state.sessions() as session, session.begin():
        for channel in (await session.execute(select(channel_store.SubscriptionChannel))).scalars():
            channel.payload = "id-only"
    bundle = event_notification(1, stay(), payload="empty")
    headers = auth(Role.EHR_SYSTEM, "hospital")
    issue = await refused(app, client, "POST", "/fhir/subscription-notification", json.dumps(bundle).encode(), headers)
    assert issue["expression"] == ["Parameters.parameter.where(name='notification-event')[0].focus"]
    assert issue["diagnostics"] == "this channel sends id-only events: each names its focus"


# --- 6. the same answer whatever was sent before --------------------------------------------------------------
# A repeated element given in the wrong shape (a list for a single value, an object for a list, a key that names
# no element) is refused naming it, whether or not the same values came before in a valid message: a review
# found a digest cache of "known valid" values (now removed) that accepted and stored such messages once the
# values had been seen, and that told any EHR token whether some site had recently sent an exact value.

ADMIT = "davinci/davinci-alerts-admit-notification-message-bundle-01.json"
HEADER = 0  # MessageHeader entry of the admit example (its Encounter and Patient are ENCOUNTER and PATIENT)


def _resource(bundle: dict[str, Any], at: int) -> dict[str, Any]:
    resource: dict[str, Any] = bundle["entry"][at]["resource"]
    return resource


def _as_list(at: int, name: str) -> Callable[[dict[str, Any]], object]:
    return lambda b: _resource(b, at).update({name: [_resource(b, at)[name]]})


def _first_item(at: int, name: str) -> Callable[[dict[str, Any]], object]:
    return lambda b: _resource(b, at).update({name: _resource(b, at)[name][0]})


def _identifier_type(b: dict[str, Any]) -> list[dict[str, Any]]:
    return [i["type"] for i in _resource(b, PATIENT)["identifier"] if "type" in i]


SHAPES: dict[str, tuple[Callable[[dict[str, Any]], object], str]] = {
    "patient-maritalStatus-as-list": (_as_list(PATIENT, "maritalStatus"), "Bundle.entry[2].resource.maritalStatus"),
    "patient-extension-as-object": (_first_item(PATIENT, "extension"), "Bundle.entry[2].resource.extension"),
    "patient-communication-as-object": (
        _first_item(PATIENT, "communication"),
        "Bundle.entry[2].resource.communication",
    ),
    "patient-meta-as-list": (_as_list(PATIENT, "meta"), "Bundle.entry[2].resource.meta"),
    "patient-identifier.type-key": (
        lambda b: _resource(b, PATIENT).update({"identifier.type": _identifier_type(b)[0]}),
        "Bundle.entry[2].resource.identifier.type",
    ),
    "patient-identifier-type-as-list": (
        lambda b: [i.update(type=[i["type"]]) for i in _resource(b, PATIENT)["identifier"] if "type" in i],
        "Bundle.entry[2].resource.identifier",
    ),
    "encounter-type-as-object": (_first_item(ENCOUNTER, "type"), "Bundle.entry[1].resource.type"),
    "encounter-participant-as-object": (
        _first_item(ENCOUNTER, "participant"),
        "Bundle.entry[1].resource.participant",
    ),
    "encounter-serviceProvider-as-list": (
        _as_list(ENCOUNTER, "serviceProvider"),
        "Bundle.entry[1].resource.serviceProvider",
    ),
    "header-sender-as-list": (_as_list(HEADER, "sender"), "Bundle.entry[0].resource.sender"),
    "header-meta-as-list": (_as_list(HEADER, "meta"), "Bundle.entry[0].resource.meta"),
    "bundle-meta-as-list": (lambda b: b.update(meta=[b["meta"]]), "Bundle.meta"),
}


@pytest.mark.parametrize("after_a_valid_one", [False, True], ids=["alone", "after-the-valid-message"])
@pytest.mark.parametrize("shape", list(SHAPES))
async def test_an_element_in_the_wrong_shape_is_refused_whatever_came_before(
    app: FastAPI, client: httpx.AsyncClient, auth: Auth, shape: str, after_a_valid_one: bool
) -> None:
    change, expression = SHAPES[shape]
    headers = auth(Role.EHR_SYSTEM, "hospital")
    if after_a_valid_one:  # the same values, each in its right shape, accepted first
        valid = await client.post(
            "/fhir/$process-message", content=json.dumps(fixture_json(ADMIT)).encode(), headers=headers
        )
        assert valid.status_code == 200, valid.text
    bundle = copy.deepcopy(fixture_json(ADMIT))
    bundle["id"] = "the-same-values-in-another-shape"
    change(bundle)
    issue = await refused(app, client, "POST", "/fhir/$process-message", json.dumps(bundle).encode(), headers)
    assert issue["expression"][0].startswith(expression), issue


# FHIR JSON gives each primitive one JSON type (https://hl7.org/fhir/R4/json.html#primitive); fhir.resources would
# read a number as a date (seconds since 1970), "true" as a boolean and "2" as an integer.
WRONG_JSON_TYPES = [
    (PATIENT, ("birthDate",), 971568000, "Bundle.entry[2].resource.birthDate"),
    (PATIENT, ("gender",), 1, "Bundle.entry[2].resource.gender"),
    (PATIENT, ("active",), "true", "Bundle.entry[2].resource.active"),
    (ENCOUNTER, ("period", "start"), 1603400000, "Bundle.entry[1].resource.period.start"),
    (PATIENT, ("name", 0, "given", 0), 7, "Bundle.entry[2].resource.name[0].given[0]"),
]


@pytest.mark.parametrize(("entry", "path", "value", "expression"), WRONG_JSON_TYPES)
async def test_a_primitive_in_the_wrong_json_type_is_refused_naming_it(
    app: FastAPI,
    client: httpx.AsyncClient,
    auth: Auth,
    entry: int,
    path: tuple[str | int, ...],
    value: object,
    expression: str,
) -> None:
    def change(bundle: dict[str, Any]) -> None:
        node: Any = bundle["entry"][entry]["resource"]
        for step in path[:-1]:
            node = node[step]
        node[path[-1]] = value

    body = discharge_with(change)
    issue = await refused(app, client, "POST", "/fhir/$process-message", body, auth(Role.EHR_SYSTEM, "hospital"))
    assert issue["expression"] == [expression]
    assert "FHIR JSON writes it as a JSON" in issue["diagnostics"]
    assert str(value) not in issue["diagnostics"]  # the value itself (PHI, maybe) is not echoed


async def test_a_name_whose_extensions_do_not_line_up_with_its_parts_is_refused_and_nothing_stored(
    app: FastAPI, client: httpx.AsyncClient, auth: Auth
) -> None:
    def change(bundle: dict[str, Any]) -> None:
        name = bundle["entry"][PATIENT]["resource"]["name"][0]
        name["_given"] = [{"extension": [{"url": "http://example.org/said", "valueString": "x"}]}] * (
            len(name["given"]) + 1
        )

    body = discharge_with(change)
    issue = await refused(app, client, "POST", "/fhir/$process-message", body, auth(Role.EHR_SYSTEM, "hospital"))
    assert issue["expression"] == ["Bundle.entry[2].resource.name[0].given"]
    assert "line up" in issue["diagnostics"]
