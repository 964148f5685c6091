"""Peerway's conformance resources are served like any FHIR server's (read, vread, search by url or _id, no
token needed); tests/api/test_capability.py holds the CapabilityStatement to the routes."""

from __future__ import annotations

import importlib
import json
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.operationdefinition import OperationDefinition

import fhir_profiles

SERVED = ("StructureDefinition", "CodeSystem", "ValueSet", "OperationDefinition", "SearchParameter")
ARTIFACTS = [r for r in fhir_profiles.artifacts() if r["resourceType"] in SERVED]
DEFINITION = f"{fhir_profiles.CANONICAL}/OperationDefinition/peer-summary"


def _label(resource: dict[str, Any]) -> str:
    return f"{resource['resourceType']}-{resource['id']}"


@pytest.mark.parametrize("resource", ARTIFACTS, ids=_label)
async def test_each_is_readable_as_stored_with_its_version(client: httpx.AsyncClient, resource: dict[str, Any]) -> None:
    kind, id = resource["resourceType"], resource["id"]
    response = await client.get(f"/fhir/{kind}/{id}")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/fhir+json; charset=utf-8"  # R4 http.html: SHALL
    served = response.json()
    meta = served.pop("meta")
    assert served == resource
    assert meta == {"versionId": resource["version"], "lastUpdated": f"{resource['date']}T00:00:00Z"}
    assert response.headers["etag"] == f'W/"{resource["version"]}"'
    assert response.headers["last-modified"].endswith("00:00:00 GMT")
    # The stored file's own text (indentation included): the bytes are served, not re-serialised.
    stored = fhir_profiles.artifact_bytes(kind, id).decode()
    assert response.text.replace(f'\n  "meta": {json.dumps(meta)},', "") == stored
    model = getattr(importlib.import_module(f"fhir.resources.R4B.{kind.lower()}"), kind)
    model.model_validate(response.json())

    version = await client.get(f"/fhir/{kind}/{id}/_history/{resource['version']}")
    assert version.status_code == 200
    assert version.content == response.content
    assert (await client.get(f"/fhir/{kind}/{id}/_history/9.9.9")).status_code == 404


async def search(client: httpx.AsyncClient, path: str, **params: str) -> dict[str, Any]:
    response = await client.get(path, params=params)
    assert response.status_code == 200, response.text
    bundle: dict[str, Any] = response.json()
    Bundle.model_validate(bundle)
    assert bundle["type"] == "searchset"
    return bundle


def ids(bundle: dict[str, Any]) -> list[str]:
    return [e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"]


async def test_search_by_url_finds_exactly_that_resource(client: httpx.AsyncClient) -> None:
    url = fhir_profiles.PEER_CONTACT_PROFILE
    bundle = await search(client, "/fhir/StructureDefinition", url=url)
    assert bundle["total"] == 1
    [entry] = bundle["entry"]
    assert entry["resource"]["url"] == url
    assert entry["search"] == {"mode": "match"}
    assert entry["fullUrl"].endswith("/fhir/StructureDefinition/peer-contact")
    assert ids(await search(client, "/fhir/StructureDefinition", url=f"{url}|0.1.0")) == ["peer-contact"]
    assert ids(await search(client, "/fhir/StructureDefinition", url=f"{url}|0.2.0")) == []
    # A canonical of another type is not found under this one.
    assert ids(await search(client, "/fhir/ValueSet", url=url)) == []


async def test_search_by_id_and_by_several_values(client: httpx.AsyncClient) -> None:
    assert ids(await search(client, "/fhir/CodeSystem", _id="age-band,peer-status")) == ["age-band", "peer-status"]
    both = await search(client, "/fhir/ValueSet", _id="age-band", url=fhir_profiles.AGE_BAND_VALUESET)
    assert ids(both) == ["age-band"]
    neither = await search(client, "/fhir/ValueSet", _id="age-band", url=fhir_profiles.PEER_STATUS_VALUESET)
    assert ids(neither) == []


async def test_an_empty_search_has_no_empty_array(client: httpx.AsyncClient) -> None:
    for path, params in (("/fhir/SearchParameter", {}), ("/fhir/CodeSystem", {"url": "http://example.org/none"})):
        bundle = await search(client, path, **params)
        assert bundle["total"] == 0
        assert "entry" not in bundle


async def test_paging_with_count_visits_every_resource_once(client: httpx.AsyncClient) -> None:
    expected = sorted(r["id"] for r in ARTIFACTS if r["resourceType"] == "CodeSystem")
    seen: list[str] = []
    bundle = await search(client, "/fhir/CodeSystem", _count="3")
    pages = 1
    while True:
        assert bundle["total"] == len(expected)
        assert len(ids(bundle)) <= 3
        seen += ids(bundle)
        following = [link["url"] for link in bundle["link"] if link["relation"] == "next"]
        if not following:
            break
        parts = urlsplit(following[0])
        response = await client.get(f"{parts.path}?{parts.query}")
        assert response.status_code == 200
        bundle = response.json()
        pages += 1
    assert sorted(seen) == expected  # each once (pages follow lastUpdated, then id)
    assert pages == -(-len(expected) // 3)
    counted = await search(client, "/fhir/CodeSystem", _count="0", _total="accurate")
    assert counted["total"] == len(expected)
    assert "entry" not in counted


@pytest.mark.parametrize(
    ("params", "expression"),
    [
        ({"name": "PeerwayAgeBand"}, "name"),
        ({"url:below": fhir_profiles.CANONICAL}, "url:below"),
        ({"_count": "-1"}, "_count"),
        ({"_count": "9" * 4000}, "_count"),
        ({"_page": "not-ours!"}, "_page"),
        ({"_elements": "url"}, "_elements"),
        ({"_total": "maybe"}, "_total"),
    ],
    ids=["unsupported", "modifier", "negative-count", "huge-count", "forged-cursor", "subset", "unknown-total"],
)
async def test_what_is_not_supported_is_refused_naming_it(
    client: httpx.AsyncClient, params: dict[str, str], expression: str
) -> None:
    response = await client.get("/fhir/CodeSystem", params=params)
    assert response.status_code == 400
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["expression"] == [expression]


async def test_lenient_handling_ignores_unknown_parameters(client: httpx.AsyncClient) -> None:
    response = await client.get(
        "/fhir/CodeSystem",
        params={"name": "whatever", "_id": "age-band"},
        headers={"Prefer": "handling=lenient"},
    )
    assert response.status_code == 200
    assert ids(response.json()) == ["age-band"]
    [self_link] = [link["url"] for link in response.json()["link"] if link["relation"] == "self"]
    assert "name=" not in self_link  # the self link says what was actually searched


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/fhir/CodeSystem/no-such-system", 404),
        ("/fhir/CodeSystem/a%20b", 400),
        ("/fhir/CodeSystem/" + "x" * 65, 400),
        ("/fhir/Encounter-peer-contact-example", 404),
        ("/fhir/StructureDefinition/age-band", 404),
    ],
    ids=["unknown", "not-an-id", "too-long", "not-a-type", "wrong-type"],
)
async def test_what_is_not_there_is_a_4xx_outcome(client: httpx.AsyncClient, path: str, status: int) -> None:
    response = await client.get(path)
    assert response.status_code == status
    assert response.json()["resourceType"] == "OperationOutcome"


async def test_examples_are_not_served_as_conformance_resources(client: httpx.AsyncClient) -> None:
    """The examples in fhir_profiles/data are instances of profiles, not Peerway's data about anyone."""
    for kind in ("Encounter", "Practitioner", "PractitionerRole"):
        assert (await client.get(f"/fhir/{kind}/peer-example")).status_code in {401, 404}


async def test_its_definition_is_served_at_its_canonical_id_without_a_token(client: httpx.AsyncClient) -> None:
    response = await client.get("/fhir/OperationDefinition/peer-summary")
    assert response.status_code == 200
    definition = response.json()
    OperationDefinition.model_validate(definition)
    assert definition["url"] == DEFINITION
    assert (definition["code"], definition["resource"], definition["instance"]) == ("peer-summary", ["Patient"], True)
    assert definition["affectsState"] is False  # which is what lets a client call it with GET
    [output] = definition["parameter"]
    assert (output["name"], output["use"], output["type"]) == ("return", "out", "Bundle")

    statement = (await client.get("/fhir/metadata")).json()
    [patient] = [r for r in statement["rest"][0]["resource"] if r["type"] == "Patient"]
    assert patient["operation"] == [
        {"name": "peer-summary", "definition": DEFINITION, "documentation": patient["operation"][0]["documentation"]}
    ]
