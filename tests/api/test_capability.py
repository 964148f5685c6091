"""The CapabilityStatement lists every /fhir route the app serves and nothing else; its profiles and operation
definitions resolve."""

from __future__ import annotations

import re

import httpx
from fastapi import FastAPI
from fhir.resources.R4B.capabilitystatement import CapabilityStatement

import fhir_profiles

# Not a FHIR REST interaction: the subscription notification endpoint is a rest-hook target the EHR posts to,
# described in rest.documentation.
NOT_REST = {("POST", "/fhir/subscription-notification"), ("GET", "/fhir/.well-known/smart-configuration")}
# (method, path pattern) -> interaction code, for /fhir/<Type>... routes; {} is any path parameter.
INTERACTIONS = {
    ("GET", "/fhir/<T>/{}"): "read",
    ("GET", "/fhir/<T>/{}/_history/{}"): "vread",
    ("PUT", "/fhir/<T>/{}"): "update",
    ("PATCH", "/fhir/<T>/{}"): "patch",
    ("DELETE", "/fhir/<T>/{}"): "delete",
    ("GET", "/fhir/<T>/{}/_history"): "history-instance",
    ("GET", "/fhir/<T>/_history"): "history-type",
    ("POST", "/fhir/<T>"): "create",
    ("GET", "/fhir/<T>"): "search-type",
    ("POST", "/fhir/<T>/_search"): "search-type",
}


def fhir_routes(app: FastAPI) -> set[tuple[str, str]]:
    """(METHOD, path with each path parameter written {}) of every route under /fhir (from the OpenAPI document,
    which lists every included router's routes; none under /fhir is left out of it)."""
    return {
        (method.upper(), re.sub(r"\{[^}]+\}", "{}", path))
        for path, operations in app.openapi()["paths"].items()
        if path.startswith("/fhir/")
        for method in operations
    }


def claimed(statement: dict[str, object]) -> set[tuple[str, str, str]]:
    """What the statement claims, as (resource type or "" for the system, kind, name)."""
    rest = statement["rest"][0]  # type: ignore[index]
    found = {("", "interaction", "capabilities")}
    found |= {("", "operation", o["name"]) for o in rest.get("operation", [])}
    for resource in rest["resource"]:
        found |= {(resource["type"], "interaction", i["code"]) for i in resource.get("interaction", [])}
        found |= {(resource["type"], "operation", o["name"]) for o in resource.get("operation", [])}
    return found


def route_claim(method: str, path: str) -> tuple[str, str, str]:
    """The statement entry a route needs: an operation, an interaction, or the metadata route."""
    if (method, path) == ("GET", "/fhir/metadata"):
        return ("", "interaction", "capabilities")
    parts = path.removeprefix("/fhir/").split("/")
    if parts[-1].startswith("$"):
        return ("" if len(parts) == 1 else parts[0], "operation", parts[-1][1:])
    pattern = "/".join(["/fhir", "<T>", *parts[1:]])
    assert (method, pattern) in INTERACTIONS, f"{method} {path}: not a FHIR interaction this test knows"
    return (parts[0], "interaction", INTERACTIONS[(method, pattern)])


async def test_every_route_is_listed_and_everything_listed_is_served(app: FastAPI, client: httpx.AsyncClient) -> None:
    statement = (await client.get("/fhir/metadata")).json()
    CapabilityStatement.model_validate(statement)
    routes = fhir_routes(app) - NOT_REST
    needed = {route_claim(method, path) for method, path in routes}
    listed = claimed(statement)
    assert needed - listed == set(), "served but not in the CapabilityStatement"
    assert listed - needed == set(), "in the CapabilityStatement but not served"
    assert len(needed) >= 25
    assert "subscription-notification" in statement["rest"][0]["documentation"]


async def test_every_served_type_is_listed(client: httpx.AsyncClient) -> None:
    statement = (await client.get("/fhir/metadata")).json()
    types = {r["type"] for r in statement["rest"][0]["resource"]}
    assert {"Practitioner", "PractitionerRole", "Consent", "Encounter", "AuditEvent", "Patient"} <= types
    assert {"StructureDefinition", "CodeSystem", "ValueSet", "OperationDefinition", "SearchParameter"} <= types


async def test_our_operations_take_get_and_post_and_their_definitions_resolve(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    statement = (await client.get("/fhir/metadata")).json()
    routes = fhir_routes(app)
    ours = 0
    rest = statement["rest"][0]
    system = [("", o) for o in rest.get("operation", [])]
    typed = [(r["type"], o) for r in rest["resource"] for o in r.get("operation", [])]
    for kind, operation in system + typed:
        definition = operation["definition"]
        if not definition.startswith(fhir_profiles.CANONICAL):
            assert definition.startswith("http://hl7.org/fhir/OperationDefinition/"), definition  # a standard one
            continue
        ours += 1
        response = await client.get(f"/fhir/OperationDefinition/{definition.rsplit('/', 1)[1]}")
        assert response.status_code == 200, definition
        served = response.json()
        assert (served["url"], served["code"]) == (definition, operation["name"])
        assert served["affectsState"] is False
        path = f"/fhir/{kind}/{{}}/${operation['name']}" if served["instance"] else f"/fhir/${operation['name']}"
        assert {("GET", path), ("POST", path)} <= routes, path
        assert served["resource"] == [kind] or not kind
    assert ours >= 1


async def test_supported_profiles_are_ours_and_fit_their_type(client: httpx.AsyncClient) -> None:
    statement = (await client.get("/fhir/metadata")).json()
    profiles = [(r["type"], p) for r in statement["rest"][0]["resource"] for p in r.get("supportedProfile", [])]
    assert {url for _, url in profiles} >= {
        fhir_profiles.PEER_CONTACT_PROFILE,
        fhir_profiles.PEER_SUPPORTER_ROLE_PROFILE,
    }
    for kind, url in profiles:
        found = (await client.get("/fhir/StructureDefinition", params={"url": url})).json()
        assert found["total"] == 1, url
        assert found["entry"][0]["resource"]["type"] == kind


async def test_the_url_parameters_and_messaging_name_only_definitions_that_exist(client: httpx.AsyncClient) -> None:
    statement = (await client.get("/fhir/metadata")).json()
    url_definitions = {
        resource["type"]: param["definition"]
        for resource in statement["rest"][0]["resource"]
        for param in resource.get("searchParam", [])
        if param["name"] == "url"
    }
    # R4's conformance-url lists the canonical resources it serves; Measure and Questionnaire have their own.
    assert url_definitions["Questionnaire"] == "http://hl7.org/fhir/SearchParameter/Questionnaire-url"
    assert url_definitions["Measure"] == "http://hl7.org/fhir/SearchParameter/Measure-url"
    assert url_definitions["StructureDefinition"] == "http://hl7.org/fhir/SearchParameter/conformance-url"
    # No supportedMessage: the Da Vinci IG publishes no current MessageDefinition to name.
    [messaging] = statement["messaging"]
    assert "supportedMessage" not in messaging
    assert "$process-message" in messaging["documentation"]
