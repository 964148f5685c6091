"""FHIR REST manners on Consent and AuditEvent, as a client used to HAPI or Medplum expects them (R4 http.html):
versions and conditional requests, Prefer, paged searches that refuse what they do not serve, JSON only."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from service.auth import Role
from service.fhir.search import MAX_COUNT, SEARCH_PARAMETERS
from service.store.db import create_engine, session_factory
from service.store.models import ConsentDocument
from tests.support.consents import peer_consent
from tests.support.flow import discharged_client_with_peer, register_peer

Auth = Callable[..., dict[str, str]]
FHIR = {"Content-Type": "application/fhir+json"}


async def consent_rows(database_url: str) -> int:
    engine = create_engine(database_url)
    try:
        async with session_factory(engine)() as session:
            return int((await session.execute(select(func.count()).select_from(ConsentDocument))).scalar_one())
    finally:
        await engine.dispose()


async def a_client(client: httpx.AsyncClient, auth: Auth) -> str:
    episode, _ = await discharged_client_with_peer(client, auth)
    patient: str = episode["patient"]
    return patient


async def post_consent(
    client: httpx.AsyncClient, auth: Auth, consent: dict[str, Any], **headers: str
) -> httpx.Response:
    return await client.post("/fhir/Consent", json=consent, headers=auth(Role.COORDINATOR, "coord", **headers))


async def test_a_created_consent_has_a_version_and_its_location_reads_it_back(
    client: httpx.AsyncClient, auth: Auth
) -> None:
    patient = await a_client(client, auth)
    created = await post_consent(client, auth, peer_consent(patient, ["preferred-name"]))
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["meta"]["versionId"] == "1"
    assert created.headers["etag"] == 'W/"1"'
    assert parsedate_to_datetime(created.headers["last-modified"]).year >= 2026
    # Location is [base]/Consent/[id]/_history/1, and reading it answers the very resource (it 404'd before).
    location = created.headers["location"]
    assert location.endswith(f"/fhir/Consent/{body['id']}/_history/1")
    vread = await client.get(location.removeprefix("http://peerway.test"), headers=auth(Role.COORDINATOR))
    assert vread.status_code == 200, vread.text
    assert vread.json() == body
    assert vread.headers["etag"] == 'W/"1"'
    read = await client.get(f"/fhir/Consent/{body['id']}", headers=auth(Role.COORDINATOR))
    assert read.headers["etag"] == 'W/"1"'
    assert read.headers["last-modified"] == created.headers["last-modified"]


async def test_a_stale_if_match_is_refused_and_changes_nothing(
    client: httpx.AsyncClient, auth: Auth, database_url: str
) -> None:
    patient = await a_client(client, auth)
    consent = (await post_consent(client, auth, peer_consent(patient, ["preferred-name"]))).json()
    url = f"/fhir/Consent/{consent['id']}"
    withdrawn = {**consent, "status": "inactive"}
    first = await client.put(url, json=withdrawn, headers=auth(Role.COORDINATOR, "c", **{"If-Match": 'W/"1"'}))
    assert first.status_code == 200, first.text
    assert first.headers["etag"] == 'W/"2"'
    # A second writer who also read version 1 is refused: its change would overwrite the withdrawal.
    stale = await client.put(
        url, json={**consent, "status": "active"}, headers=auth(Role.COORDINATOR, "c", **{"If-Match": 'W/"1"'})
    )
    assert stale.status_code == 412, stale.text
    assert stale.json()["issue"][0]["expression"] == ["If-Match"]
    now = await client.get(url, headers=auth(Role.COORDINATOR))
    assert now.json()["status"] == "inactive"
    assert now.json()["meta"]["versionId"] == "2"
    # The older version is not kept: vread of it says so (404), the current one is served.
    assert (await client.get(f"{url}/_history/1", headers=auth(Role.COORDINATOR))).status_code == 404
    assert (await client.get(f"{url}/_history/2", headers=auth(Role.COORDINATOR))).status_code == 200
    assert await consent_rows(database_url) == 1


async def test_if_match_on_a_consent_that_does_not_exist_is_412(client: httpx.AsyncClient, auth: Auth) -> None:
    patient = await a_client(client, auth)
    response = await client.put(
        "/fhir/Consent/new-one",
        json=peer_consent(patient, ["preferred-name"]) | {"id": "new-one"},
        headers=auth(Role.COORDINATOR, "c", **{"If-Match": 'W/"3"'}),
    )
    assert response.status_code == 412


@pytest.mark.parametrize("etag", ["3", 'W/"x"', '"', "W/" + '"' + "9" * 5000 + '"'])
async def test_an_if_match_that_is_no_etag_is_a_400(client: httpx.AsyncClient, auth: Auth, etag: str) -> None:
    response = await client.put(
        "/fhir/Consent/x",
        json=peer_consent("Patient/x", ["preferred-name"]),
        headers=auth(Role.COORDINATOR, "c", **{"If-Match": etag}),
    )
    assert response.status_code == 400
    assert response.json()["issue"][0]["expression"] == ["If-Match"]


async def test_if_none_exist_answers_the_consent_already_recorded(
    client: httpx.AsyncClient, auth: Auth, database_url: str
) -> None:
    patient = await a_client(client, auth)
    consent = peer_consent(patient, ["preferred-name"]) | {
        "identifier": [{"system": "urn:example:form", "value": "F-17"}]
    }
    condition = {"If-None-Exist": "identifier=urn:example:form|F-17"}
    first = await post_consent(client, auth, consent, **condition)
    second = await post_consent(client, auth, consent, **condition)
    assert (first.status_code, second.status_code) == (201, 200)
    assert second.json()["id"] == first.json()["id"]
    assert await consent_rows(database_url) == 1
    for odd_condition in ("status=active", "identifier=urn:example:form|%00", "identifier=|"):
        odd = await post_consent(client, auth, consent, **{"If-None-Exist": odd_condition})
        assert odd.status_code == 400, odd_condition  # a NUL reached PostgreSQL as a 500 before
        assert odd.json()["issue"][0]["expression"] == ["If-None-Exist"]


@pytest.mark.parametrize(
    ("prefer", "body"),
    [("return=minimal", None), ("return=representation", "Consent"), ("return=OperationOutcome", "OperationOutcome")],
)
async def test_prefer_return_is_honoured(client: httpx.AsyncClient, auth: Auth, prefer: str, body: str | None) -> None:
    patient = await a_client(client, auth)
    created = await post_consent(client, auth, peer_consent(patient, ["preferred-name"]), Prefer=prefer)
    assert created.status_code == 201
    assert created.headers["etag"] == 'W/"1"'
    assert "/_history/1" in created.headers["location"]
    if body is None:
        assert created.content == b""
    else:
        assert created.json()["resourceType"] == body


async def some_consents(client: httpx.AsyncClient, auth: Auth, n: int) -> tuple[str, list[str]]:
    patient = await a_client(client, auth)
    ids = []
    for _ in range(n):
        ids.append((await post_consent(client, auth, peer_consent(patient, ["preferred-name"]))).json()["id"])
    return patient, ids


async def pages(client: httpx.AsyncClient, auth: Auth, url: str, relation: str = "next") -> list[dict[str, Any]]:
    """Follow `relation` links from `url`, answering every page."""
    seen = []
    while url:
        response = await client.get(url.removeprefix("http://peerway.test"), headers=auth(Role.COORDINATOR))
        assert response.status_code == 200, response.text
        seen.append(response.json())
        url = next((link["url"] for link in response.json()["link"] if link["relation"] == relation), "")
    return seen


def ids_of(bundle: dict[str, Any]) -> list[str]:
    return [e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"]


async def test_count_pages_with_next_and_previous_links_stable_under_inserts(
    client: httpx.AsyncClient, auth: Auth
) -> None:
    patient, ids = await some_consents(client, auth, 5)
    first = (
        await client.get("/fhir/Consent", params={"patient": patient, "_count": 2}, headers=auth(Role.COORDINATOR))
    ).json()
    assert ids_of(first) == ids[:2]
    assert "total" not in first  # not asked for, and not known without counting
    assert "previous" not in {link["relation"] for link in first["link"]}
    # A Consent recorded while the client pages lands at the end; nothing repeats and nothing is skipped.
    late = (await post_consent(client, auth, peer_consent(patient, ["contact-details"]))).json()["id"]
    next_url = next(link["url"] for link in first["link"] if link["relation"] == "next")
    rest = await pages(client, auth, next_url)
    assert [i for page in [first, *rest] for i in ids_of(page)] == [*ids, late]
    assert len(rest) == 2
    # And back from the last page, with previous links, to the first.
    previous_url = next(link["url"] for link in rest[-1]["link"] if link["relation"] == "previous")
    back = await pages(client, auth, previous_url, "previous")
    assert [ids_of(page) for page in back] == [ids[2:4], ids[:2]]


async def test_page_size_has_a_default_and_a_maximum(client: httpx.AsyncClient, auth: Auth) -> None:
    patient, _ = await some_consents(client, auth, 1)
    big = await client.get(
        "/fhir/Consent", params={"patient": patient, "_count": 100000}, headers=auth(Role.COORDINATOR)
    )
    self_link = next(link["url"] for link in big.json()["link"] if link["relation"] == "self")
    assert f"_count={MAX_COUNT}" in self_link
    plain = await client.get("/fhir/Consent", params={"patient": patient}, headers=auth(Role.COORDINATOR))
    assert "_count=20" in plain.json()["link"][0]["url"]
    assert plain.json()["total"] == 1  # one page holds every match: the total is known for free


async def test_sort_id_status_and_total(client: httpx.AsyncClient, auth: Auth) -> None:
    patient, ids = await some_consents(client, auth, 3)
    withdrawn = await client.put(
        f"/fhir/Consent/{ids[0]}",
        json=peer_consent(patient, ["preferred-name"], status="inactive") | {"id": ids[0]},
        headers=auth(Role.COORDINATOR),
    )
    assert withdrawn.status_code == 200, withdrawn.text

    async def search(**params: Any) -> dict[str, Any]:
        response = await client.get(
            "/fhir/Consent", params={"patient": patient, **params}, headers=auth(Role.COORDINATOR)
        )
        assert response.status_code == 200, response.text
        found: dict[str, Any] = response.json()
        return found

    # ids[0] changed last, so it is now the most recently updated.
    assert ids_of(await search(_sort="-_lastUpdated")) == [ids[0], ids[2], ids[1]]
    assert ids_of(await search(_sort="_lastUpdated")) == [ids[1], ids[2], ids[0]]
    assert ids_of(await search(_id=f"{ids[1]},{ids[2]}")) == [ids[1], ids[2]]
    assert ids_of(await search(status="inactive")) == [ids[0]]
    assert ids_of(await search(status="active", _count=1, _total="accurate")) == [ids[1]]
    assert (await search(status="active", _count=1, _total="accurate"))["total"] == 2
    counted = await search(_summary="count")
    assert counted["total"] == 3
    assert "entry" not in counted
    assert ids_of(await search(_lastUpdated="ge2000-01-01")) == [ids[1], ids[2], ids[0]]
    assert ids_of(await search(_lastUpdated="lt2000-01-01")) == []


@pytest.mark.parametrize(
    ("params", "expression"),
    [
        ({"name": "x"}, "name"),
        ({"patient:missing": "true"}, "patient:missing"),
        ({"_sort": "status"}, "_sort"),
        ({"_count": "-1"}, "_count"),
        ({"_count": "9" * 5000}, "_count"),
        ({"_summary": "true"}, "_summary"),
        ({"_page": "not-a-cursor"}, "_page"),
        ({"_lastUpdated": "yesterday"}, "_lastUpdated"),
        ({"_include": "Consent:patient"}, "_include"),
        ({"_page": "A" * 5000}, "_page"),
        ({"_page": base64.urlsafe_b64encode(b"[" * 3000).decode()}, "_page"),
        ({"_lastUpdated": "ge9999-12-31T23:59:59Z"}, "_lastUpdated"),
        ({"patient": "Patient/other"}, "patient"),
    ],
)
async def test_unsupported_search_parameters_are_refused(
    client: httpx.AsyncClient, auth: Auth, params: dict[str, str], expression: str
) -> None:
    patient, _ = await some_consents(client, auth, 1)
    query = httpx.QueryParams([("patient", patient), *params.items()])  # a second patient repeats, not replaces
    response = await client.get("/fhir/Consent", params=query, headers=auth(Role.COORDINATOR))
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/fhir+json; charset=utf-8"
    assert response.json()["issue"][0]["expression"] == [expression]


async def test_lenient_handling_ignores_unknown_parameters_and_says_so(client: httpx.AsyncClient, auth: Auth) -> None:
    patient, ids = await some_consents(client, auth, 1)
    response = await client.get(
        "/fhir/Consent",
        params={"patient": patient, "name": "x"},
        headers=auth(Role.COORDINATOR, "c", Prefer="handling=lenient"),
    )
    assert response.status_code == 200
    assert ids_of(response.json()) == ids
    outcome = [e for e in response.json()["entry"] if e["search"]["mode"] == "outcome"]
    assert outcome[0]["resource"]["issue"][0]["expression"] == ["name"]
    assert "name=" not in response.json()["link"][0]["url"]


async def test_every_listed_search_parameter_is_served(client: httpx.AsyncClient, auth: Auth) -> None:
    episode, peer = await discharged_client_with_peer(client, auth)
    patient = episode["patient"]
    values = {"reference": patient, "token": "x", "date": "ge2026-01-01", "uri": "http://example.org/x"}
    listed = (await client.get("/fhir/metadata")).json()["rest"][0]["resource"]
    served = {r["type"]: {p["name"] for p in r.get("searchParam", [])} for r in listed}
    for resource_type, parameters in SEARCH_PARAMETERS.items():
        assert served[resource_type] == {p.name for p in parameters}
        caller = auth(Role.PEER, peer["id"]) if resource_type == "Encounter" else auth(Role.COORDINATOR)
        for parameter in parameters:
            params = {parameter.name: values[parameter.type]}
            if any(p.name == "patient" for p in parameters):
                params.setdefault("patient", patient)
            response = await client.get(f"/fhir/{resource_type}", params=params, headers=caller)
            assert response.status_code == 200, (resource_type, parameter.name, response.text)


async def test_pretty_is_indented_and_kept_in_the_links(client: httpx.AsyncClient, auth: Auth) -> None:
    patient, ids = await some_consents(client, auth, 2)
    params = {"patient": patient, "_pretty": "true", "_count": "1"}
    response = await client.get("/fhir/Consent", params=params, headers=auth(Role.COORDINATOR))
    assert response.text.startswith('{\n  "resourceType": "Bundle"')
    assert ids_of(response.json()) == ids[:1]
    next_url = next(link["url"] for link in response.json()["link"] if link["relation"] == "next")
    assert "_pretty=true" in next_url


async def test_elements_keeps_what_was_asked_and_the_mandatory_and_says_subsetted(
    client: httpx.AsyncClient, auth: Auth
) -> None:
    patient, _ = await some_consents(client, auth, 1)
    params = {"patient": patient, "_elements": "dateTime"}
    response = await client.get("/fhir/Consent", params=params, headers=auth(Role.COORDINATOR))
    assert response.status_code == 200, response.text
    [consent] = [e["resource"] for e in response.json()["entry"]]
    assert set(consent) == {"resourceType", "id", "meta", "dateTime", "status", "scope", "category"}
    assert {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED"} in consent[
        "meta"
    ]["tag"]
    refused = await client.get(
        "/fhir/Consent", params={"patient": patient, "_elements": "provision.actor"}, headers=auth(Role.COORDINATOR)
    )
    assert refused.status_code == 400
    assert refused.json()["issue"][0]["expression"] == ["_elements"]


async def test_an_empty_search_has_no_empty_array(client: httpx.AsyncClient, auth: Auth) -> None:
    response = await client.get("/fhir/Consent", params={"patient": "Patient/nobody"}, headers=auth(Role.COORDINATOR))
    assert response.status_code == 200
    assert "entry" not in response.json()
    assert b"[]" not in response.content
    assert b"{}" not in response.content


def summary_path(app: FastAPI, client_id: str) -> str:
    return f"/fhir/Patient/{client_id}/$peer-summary"


async def test_a_withdrawn_summary_has_no_empty_array(app: FastAPI, client: httpx.AsyncClient, auth: Auth) -> None:
    episode, peer = await discharged_client_with_peer(client, auth)
    consent = (await post_consent(client, auth, peer_consent(episode["patient"], ["preferred-name"]))).json()
    withdrawn = await client.put(
        f"/fhir/Consent/{consent['id']}", json={**consent, "status": "inactive"}, headers=auth(Role.COORDINATOR)
    )
    assert withdrawn.status_code == 200
    summary = await client.get(summary_path(app, episode["client_id"]), headers=auth(Role.PEER, peer["id"]))
    assert summary.status_code == 200, summary.text
    assert summary.json()["resourceType"] == "Bundle"
    assert "entry" not in summary.json()
    assert b"[]" not in summary.content


async def test_peer_profiles_carry_their_version(client: httpx.AsyncClient, auth: Auth) -> None:
    peer = await register_peer(client, auth, "Maria Silva")
    body = {"gender": "female", "languages": ["en"], "interests": ["tennis"], "caseload_cap": 3}
    for _ in range(2):
        put = await client.put(f"/api/peers/{peer['id']}/profile", json=body, headers=auth(Role.COORDINATOR))
        assert put.status_code == 200, put.text
    for resource_type in ("Practitioner", "PractitionerRole"):
        read = await client.get(f"/fhir/{resource_type}/{peer['id']}", headers=auth(Role.COORDINATOR))
        assert read.status_code == 200, read.text
        assert read.json()["meta"]["versionId"] == "3"  # registered, then changed twice
        assert read.headers["etag"] == 'W/"3"'
        updated = datetime.fromisoformat(read.json()["meta"]["lastUpdated"].replace("Z", "+00:00"))
        assert parsedate_to_datetime(read.headers["last-modified"]) == updated.replace(microsecond=0)


async def test_audit_events_carry_versions_and_page(app: FastAPI, client: httpx.AsyncClient, auth: Auth) -> None:
    episode, peer = await discharged_client_with_peer(client, auth)
    for _ in range(3):
        summary = await client.get(summary_path(app, episode["client_id"]), headers=auth(Role.PEER, peer["id"]))
        assert summary.status_code == 200
    first = await client.get(
        "/fhir/AuditEvent", params={"patient": episode["patient"], "_count": 2}, headers=auth(Role.COORDINATOR)
    )
    assert first.status_code == 200, first.text
    events = [e["resource"] for e in first.json()["entry"]]
    assert len(events) == 2
    assert all(e["meta"]["versionId"] == "1" and e["meta"]["lastUpdated"] == e["recorded"] for e in events)
    rest = await pages(client, auth, next(link["url"] for link in first.json()["link"] if link["relation"] == "next"))
    assert sum(len(ids_of(p)) for p in rest) == 1


@pytest.mark.parametrize(
    ("params", "headers"),
    [
        ({"_format": "xml"}, {}),
        ({"_format": "application/fhir+xml"}, {}),
        ({}, {"Accept": "application/fhir+xml"}),
        ({}, {"Accept": "application/xml, application/fhir+json;q=0"}),
    ],
)
async def test_xml_is_not_acceptable(
    client: httpx.AsyncClient, auth: Auth, params: dict[str, str], headers: dict[str, str]
) -> None:
    response = await client.get(
        "/fhir/Consent", params={"patient": "Patient/x", **params}, headers=auth(Role.COORDINATOR, "c", **headers)
    )
    assert response.status_code == 406
    assert response.json()["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize(
    "accept", ["application/fhir+json", "application/json", "*/*", "application/fhir+xml;q=0.9, */*;q=0.1"]
)
async def test_json_is_acceptable(client: httpx.AsyncClient, auth: Auth, accept: str) -> None:
    response = await client.get(
        "/fhir/Consent", params={"patient": "Patient/x"}, headers=auth(Role.COORDINATOR, "c", Accept=accept)
    )
    assert response.status_code == 200


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "application/fhir+xml", None]
)
async def test_a_body_that_is_not_fhir_json_is_415_and_not_stored(
    client: httpx.AsyncClient, auth: Auth, database_url: str, content_type: str | None
) -> None:
    patient = await a_client(client, auth)
    headers = auth(Role.COORDINATOR)
    if content_type is not None:
        headers["Content-Type"] = content_type
    body = json.dumps(peer_consent(patient, ["preferred-name"])).encode()
    response = await client.post("/fhir/Consent", content=body, headers=headers)
    assert response.status_code == 415, response.text
    assert response.json()["issue"][0]["expression"] == ["Content-Type"]
    assert await consent_rows(database_url) == 0


async def test_every_fhir_read_answers_json_only(client: httpx.AsyncClient, auth: Auth) -> None:
    """Not only Consent: the CapabilityStatement, conformance resources, a peer as Practitioner and the peer
    summary refuse XML with 406 before doing anything else."""
    episode, peer = await discharged_client_with_peer(client, auth)
    xml = {"Accept": "application/fhir+xml"}
    for path, caller in (
        ("/fhir/metadata", {}),
        ("/fhir/CodeSystem/age-band", {}),
        ("/fhir/CodeSystem", {}),
        (f"/fhir/Practitioner/{peer['id']}", auth(Role.COORDINATOR)),
        (f"/fhir/Patient/{episode['client_id']}/$peer-summary", auth(Role.PEER, peer["id"])),
    ):
        response = await client.get(path, headers={**caller, **xml})
        assert response.status_code == 406, path
        assert response.json()["resourceType"] == "OperationOutcome"
        assert (await client.get(path, headers=caller)).status_code == 200, path


def forged_page(direction: str, moment: str, key: str) -> str:
    raw = json.dumps([direction, moment, key], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    ("params", "expression"),
    [
        ({"_page": forged_page("n", "0001-01-01T00:00:00+05:00", "x")}, "_page"),
        ({"_page": forged_page("n", "9999-12-31T23:59:59-05:00", "x")}, "_page"),
        ({"_page": forged_page("n", "2026-01-01T00:00:00+00:00", "\ud800")}, "_page"),
        ({"_page": forged_page("n", "2026-01-01T00:00:00+00:00", "a\u0000b")}, "_page"),
        ({"_lastUpdated": "ge0001-01-01T00:00:00+05:00"}, "_lastUpdated"),
        ({"_lastUpdated": "lt9999-12-31T23:00:00-05:00"}, "_lastUpdated"),
    ],
    ids=["cursor-before-year-1", "cursor-after-9999", "cursor-lone-surrogate", "cursor-nul", "since-1", "until-9999"],
)
async def test_a_forged_cursor_or_a_date_at_the_ends_of_time_is_a_400(
    client: httpx.AsyncClient, auth: Auth, params: dict[str, str], expression: str
) -> None:
    patient = await a_client(client, auth)
    for path, extra in (("/fhir/Consent", {"patient": patient}), ("/fhir/AuditEvent", {"patient": patient})):
        response = await client.get(path, params={**extra, **params}, headers=auth(Role.COORDINATOR, "c"))
        assert response.status_code == 400, (path, response.text)
        assert response.json()["issue"][0]["expression"] == [expression]


async def test_of_two_updates_naming_the_same_version_exactly_one_wins(client: httpx.AsyncClient, auth: Auth) -> None:
    """The optimistic lock holds on SQLite too, where SELECT ... FOR UPDATE locks nothing: a withdrawal and a
    re-activation racing on one version cannot both be told they succeeded."""
    patient = await a_client(client, auth)
    consent = (await post_consent(client, auth, peer_consent(patient, ["preferred-name"]))).json()
    url = f"/fhir/Consent/{consent['id']}"
    for round_ in range(1, 6):
        current = await client.get(url, headers=auth(Role.COORDINATOR, "c"))
        assert current.headers["etag"] == f'W/"{round_}"'
        headers = auth(Role.COORDINATOR, "c", **{"If-Match": current.headers["etag"]})
        answers = await asyncio.gather(
            client.put(url, json={**consent, "status": "inactive"}, headers=headers),
            client.put(url, json={**consent, "status": "active"}, headers=headers),
        )
        assert sorted(a.status_code for a in answers) == [200, 412], [a.text for a in answers]
        [winner] = [a for a in answers if a.status_code == 200]
        final = await client.get(url, headers=auth(Role.COORDINATOR, "c"))
        assert final.json()["status"] == winner.json()["status"]
        assert final.headers["etag"] == f'W/"{round_ + 1}"'


async def test_a_consent_identifier_longer_than_peerway_keeps_is_refused_not_cut(
    client: httpx.AsyncClient, auth: Auth
) -> None:
    patient = await a_client(client, auth)
    consent = {**peer_consent(patient, ["preferred-name"]), "identifier": [{"system": "urn:x", "value": "v" * 400}]}
    response = await post_consent(client, auth, consent)
    assert response.status_code == 422, response.text
    assert response.json()["issue"][0]["expression"] == ["Consent.identifier"]
    listed = await client.get("/fhir/Consent", params={"patient": patient}, headers=auth(Role.COORDINATOR, "c"))
    assert "entry" not in listed.json()


async def test_consent_identifier_and_status_are_searched_as_fhir_tokens(client: httpx.AsyncClient, auth: Auth) -> None:
    patient = await a_client(client, auth)
    two = [{"system": "urn:a", "value": "one"}, {"system": "urn:b", "value": "two"}]
    first = await post_consent(client, auth, peer_consent(patient, ["preferred-name"]) | {"identifier": two})
    plain = [{"value": "plain"}]  # an identifier without a system
    second = await post_consent(client, auth, peer_consent(patient, ["preferred-name"]) | {"identifier": plain})
    assert (first.status_code, second.status_code) == (201, 201)
    ids = {"first": first.json()["id"], "second": second.json()["id"]}

    async def found(**params: str) -> set[str]:
        answer = await client.get(
            "/fhir/Consent", params={"patient": patient, **params}, headers=auth(Role.COORDINATOR, "c")
        )
        assert answer.status_code == 200, answer.text
        names = {v: k for k, v in ids.items()}
        return {names[e["resource"]["id"]] for e in answer.json().get("entry", [])}

    assert await found(identifier="one") == {"first"}  # a value alone: whatever the system
    assert await found(identifier="urn:b|two") == {"first"}  # the second identifier counts as much as the first
    assert await found(identifier="urn:a|") == {"first"}  # any value in the system
    assert await found(identifier="|plain") == {"second"}  # a value with no system
    assert await found(identifier="|one") == set()
    assert await found(identifier="urn:a|two") == set()
    assert await found(identifier="two,plain") == {"first", "second"}  # comma: any of them
    # Thousands of values of each form in one search (one OR each was too deep for SQLite: a 503).
    many = [f"v{n}" for n in range(1500)] + [f"urn:z|v{n}" for n in range(1500)] + [f"urn:y{n}|" for n in range(1500)]
    assert await found(identifier=",".join([*many, "urn:b|two"])) == {"first"}
    states = "http://hl7.org/fhir/consent-state-codes"
    assert await found(status=f"{states}|active") == {"first", "second"}
    assert await found(status=f"{states}|") == {"first", "second"}
    assert await found(status="urn:other|active") == set()

    # A new version's identifiers replace the old version's.
    renamed = first.json() | {"identifier": [{"system": "urn:c", "value": "three"}]}
    updated = await client.put(f"/fhir/Consent/{ids['first']}", json=renamed, headers=auth(Role.COORDINATOR, "c"))
    assert updated.status_code == 200, updated.text
    assert await found(identifier="one") == set()
    assert await found(identifier="urn:c|three") == {"first"}


async def test_if_none_exist_finds_a_consent_by_any_of_its_identifiers(
    client: httpx.AsyncClient, auth: Auth, database_url: str
) -> None:
    patient = await a_client(client, auth)
    consent = peer_consent(patient, ["preferred-name"]) | {
        "identifier": [{"system": "urn:a", "value": "one"}, {"system": "urn:b", "value": "two"}]
    }
    first = await post_consent(client, auth, consent)
    for condition in ("identifier=urn:b|two", "identifier=two", "identifier=urn:a|one"):
        again = await post_consent(client, auth, consent, **{"If-None-Exist": condition})
        assert (again.status_code, again.json()["id"]) == (200, first.json()["id"]), condition
    assert await consent_rows(database_url) == 1
    other = peer_consent(patient, ["preferred-name"]) | {"identifier": [{"system": "urn:a", "value": "other"}]}
    assert (await post_consent(client, auth, other)).status_code == 201
    several = await post_consent(client, auth, consent, **{"If-None-Exist": "identifier=urn:a|"})
    assert several.status_code == 412  # two Consents match: the server cannot tell which was meant
    assert await consent_rows(database_url) == 2


async def test_a_method_not_served_is_a_405_whose_allow_names_every_method_the_path_serves(
    client: httpx.AsyncClient, auth: Auth
) -> None:
    deleted = await client.delete("/fhir/Consent/any-id", headers=auth(Role.COORDINATOR, "c"))
    assert deleted.status_code == 405
    assert deleted.json()["issue"][0]["code"] == "not-supported"
    # GET (read) and PUT (update) are two routes of one path: RFC 9110 wants both named.
    assert set(deleted.headers["allow"].split(", ")) >= {"GET", "PUT"}
    assert "DELETE" not in deleted.headers["allow"]
