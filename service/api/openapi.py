"""The OpenAPI document a client developer works from, enriched in one place so the routers stay thin.

FastAPI's own document says what the Python signatures say. Here every operation also gets:
- a description: the summary, who may call it (read from the route's dependencies, so it cannot drift), what it
  answers and which errors;
- an example: the FHIR request body (a real payload, the profile's canonical URL named) for the FHIR writes, and
  the success answer (a FHIR example resource, or one built from the response model's schema);
- every 4xx as what Peerway really answers, an OperationOutcome (FastAPI's HTTPValidationError is never sent:
  the error handlers turn validation errors into OperationOutcomes), from one shared table;
- an OpenID Connect security scheme beside the bearer one when PEERWAY_DOCS_OPENID_URL names a provider, so
  Swagger's Authorize signs a person in (authorization code with PKCE) at their organization's provider.
"""

from __future__ import annotations

import copy
import inspect
import re
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import _get_api_route_for_openapi
from fastapi.routing import iter_route_contexts

import fhir_profiles
from service.api import examples
from service.api.hot import route_paths
from service.api.responses import FHIR_JSON, FhirResponse
from service.settings import Settings

OUTCOME_REF = {"$ref": "#/components/schemas/OperationOutcome"}
OPERATION_OUTCOME_SCHEMA: dict[str, Any] = {
    "type": "object",
    "title": "OperationOutcome",
    "description": "FHIR R4 OperationOutcome (https://hl7.org/fhir/R4/operationoutcome.html): every error answer.",
    "required": ["resourceType", "issue"],
    "properties": {
        "resourceType": {"type": "string", "enum": ["OperationOutcome"]},
        "issue": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["severity", "code"],
                "properties": {
                    "severity": {"type": "string", "enum": ["fatal", "error", "warning", "information"]},
                    "code": {"type": "string", "description": "http://hl7.org/fhir/issue-type"},
                    "diagnostics": {"type": "string"},
                    "expression": {"type": "array", "items": {"type": "string"}},
                },
            },
        },
    },
}

# The shared error table: status -> (what it means, the issue code and diagnostics of an example).
ERRORS: dict[int, tuple[str, str, str, str | None]] = {
    400: ("A query parameter, path segment or header is malformed", "invalid", "query.patient: bad value",
          "query.patient"),
    401: ("No token, or one Peerway does not accept", "login", "a bearer token is required", None),
    403: ("The caller's role, site or scope does not allow this", "forbidden", "this needs the role coordinator",
          None),
    404: ("Nothing of that id is known to this caller", "not-found", "Patient/abc is not known", None),
    406: ("_format or Accept asks for something but FHIR JSON", "not-supported",
          "_format='xml': this server answers in FHIR JSON only", "_format"),
    409: ("It changed meanwhile, or conflicts with what is stored", "conflict", "changed meanwhile: retry", None),
    412: ("If-Match names a version that is no longer current", "conflict",
          "If-Match names version 1 of Encounter/abc, but the current version is 2", "If-Match"),
    413: ("The body is larger than PEERWAY_MAX_BODY_BYTES", "too-costly", "the body is larger than 5000000 bytes",
          None),
    415: ("The body is not JSON", "not-supported", "Content-Type must be application/fhir+json", None),
    422: ("The body is not acceptable; expression names the element", "invalid",
          "Encounter.status must be 'finished'", "Encounter.status"),
    429: ("Too many failed attempts from this address: wait Retry-After seconds", "throttled",
          "too many failed attempts", None),
}  # fmt: skip
# POST /auth/token answers OAuth's own error shape (RFC 6749 5.2), as SMART Backend Services clients expect.
OAUTH_ERRORS = {
    str(status): {
        "description": meaning,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {"error": {"type": "string"}, "error_description": {"type": "string"}},
                },
                "example": {"error": error, "error_description": said},
            }
        },
    }
    for status, meaning, error, said in [
        (400, "The request or its scope is not acceptable", "invalid_scope", "system/Patient.r is not granted"),
        (401, "The client assertion is not acceptable", "invalid_client", "the assertion's signature does not verify"),
    ]
}
# A route as FastAPI's OpenAPI builder sees it (an APIRoute with its routers' prefixes and dependencies applied);
# its type is private to FastAPI.
Route = Any
PUBLIC = "anyone (no token)"


def error_response(status: int) -> dict[str, Any]:
    meaning, code, diagnostics, expression = ERRORS[status]
    issue: dict[str, Any] = {"severity": "error", "code": code, "diagnostics": diagnostics}
    if expression:
        issue["expression"] = [expression]
    example = {"resourceType": "OperationOutcome", "issue": [issue]}
    return {"description": meaning, "content": {FHIR_JSON: {"schema": OUTCOME_REF, "example": example}}}


def _closure(call: Callable[..., Any], name: str) -> Any:
    names = call.__code__.co_freevars
    cells = call.__closure__ or ()
    return cells[names.index(name)].cell_contents if name in names else None


# The named dependencies of deps.py, said in words.
CALLERS = {
    "ehr_sender": "a registered site's EHR (SMART Backend Services token, scope system/Encounter.u)",
    "site_actor": "a coordinator, or a registered site's EHR",
    "notification_sender": "a site's EHR: its subscription channel secret header, or an ehr-system token",
    "principal": "anyone signed in",
}


def route_methods(app: FastAPI) -> list[tuple[re.Pattern[str], frozenset[str]]]:
    """Each route's path pattern (its full path, routers' prefixes included) and methods."""
    found = []
    for context in iter_route_contexts(app.routes):
        route = _get_api_route_for_openapi(context)
        if route is not None:
            found.append((route.path_regex, frozenset(route.methods)))
    return found


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def who_may_call(route: Route) -> str:
    """The callers the route's dependencies admit, most specific first."""
    found: list[str] = []
    pending = list(route.dependant.dependencies)
    while pending:
        dependant = pending.pop(0)
        call = dependant.call
        name = getattr(call, "__name__", "")
        if call is not None and name == "check" and _closure(call, "roles"):
            roles = _closure(call, "roles")
            found.append(" or ".join(f"{_article(r.value)} {r.value}" for r in roles) + " (bearer token)")
        elif name in CALLERS:
            found.append(CALLERS[name])
        pending.extend(dependant.dependencies)
    return found[0] if found else PUBLIC


def _statuses(path: str, method: str, operation: dict[str, Any], route: Route) -> list[int]:
    statuses = {400, 429}
    if operation.get("security"):
        statuses |= {401, 403}
    if "{" in path or path.startswith("/fhir/"):
        statuses.add(404)
    if "requestBody" in operation or method in ("post", "put"):
        statuses |= {413, 415, 422}
    if route.response_class is FhirResponse or path.startswith("/fhir/"):
        statuses.add(406)
    if method in ("put", "post", "delete"):
        statuses.add(409)
    if method == "put" and path.startswith("/fhir/"):
        statuses.add(412)
    if path == "/auth/token":  # OAuth's own error answers (RFC 6749 5.2), documented by the route itself
        return []
    return sorted(statuses)


def _schema_example(schema: Any, components: dict[str, Any], name: str = "", depth: int = 0) -> Any:
    """An example value from a JSON schema (the response model's): enums, formats and field names guide it."""
    if not isinstance(schema, dict) or depth > 8:
        return None
    if "$ref" in schema:
        return _schema_example(components.get(schema["$ref"].rsplit("/", 1)[1]), components, name, depth + 1)
    if "example" in schema:
        return schema["example"]
    if schema.get("examples"):
        return schema["examples"][0]
    if "default" in schema and schema["default"] is not None:
        return schema["default"]
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            options = [s for s in schema[key] if s.get("type") != "null"]
            return _schema_example(options[0], components, name, depth + 1) if options else None
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        return {
            key: _schema_example(value, components, key, depth + 1)
            for key, value in (schema.get("properties") or {}).items()
        }
    if kind == "array":
        item = _schema_example(schema.get("items"), components, name, depth + 1)
        return [] if item is None else [item]
    if kind == "integer":
        return examples.NUMBERS.get(name, 1)
    if kind == "number":
        return float(examples.NUMBERS.get(name, 1))
    if kind == "boolean":
        return True
    if kind == "string":
        formats = {"date-time": "2026-11-20T14:00:00Z", "date": "2026-11-20", "uri": "https://example.org/fhir"}
        return formats.get(schema.get("format", ""), examples.word(name))
    return None


def _fhir_body(path: str, method: str) -> dict[str, Any] | None:
    body = examples.FHIR_BODIES.get((method, path))
    if body is None:
        return None
    resource, profile, example = body
    said = f"A FHIR R4 {resource}" + (f" conforming to the profile {profile}" if profile else "") + "."
    schema = {
        "type": "object",
        "required": ["resourceType"],
        "properties": {"resourceType": {"type": "string", "enum": [resource]}},
        "description": said,
    }
    if profile:
        schema["externalDocs"] = {"description": "the profile", "url": profile}
    required = resource != "Parameters"  # $peer-summary takes an empty body too
    return {"required": required, "description": said, "content": {FHIR_JSON: {"schema": schema, "example": example}}}


PREFER = {
    "name": "Prefer",
    "in": "header",
    "required": False,
    "description": "return=representation (default: the resource as stored), return=minimal (no body) or "
    "return=OperationOutcome (what happened, and a warning issue for each element not kept as sent)",
    "schema": {"type": "string", "enum": ["return=representation", "return=minimal", "return=OperationOutcome"]},
}
WRITE_HEADERS = {
    "Location": {"description": "[base]/Type/id/_history/version of what was written", "schema": {"type": "string"}},
    "ETag": {"description": 'W/"version": send it back in If-Match to change this version only',
             "schema": {"type": "string"}},
    "Warning": {"description": 'What of the sent resource was not kept as sent, one `199 peerway "..."` each '
                "(absent when all was kept; with return=OperationOutcome they are its warning issues)",
                "schema": {"type": "string"}},
}  # fmt: skip


IF_NONE_EXIST = {
    "name": "If-None-Exist",
    "in": "header",
    "required": False,
    "description": "identifier=<system>|<value>: a conditional create; one of your contacts with that identifier"
    " is answered (200) instead of a new one being recorded",
    "schema": {"type": "string"},
}


def _document_write(path: str, method: str, operation: dict[str, Any]) -> None:
    """A FHIR create or update: the Prefer header it honours and the headers of its answer. Only contacts are
    answered with warnings (Consents are kept as sent or refused), and only a contact create can match."""
    contact = path.startswith("/fhir/Encounter")
    operation.setdefault("parameters", []).append(PREFER)
    if contact and method == "post":
        operation["parameters"].append(IF_NONE_EXIST)
        created = operation["responses"].get("201")
        if created is not None:
            operation["responses"]["200"] = {
                **copy.deepcopy(created),
                "description": "A retry with the same identifier, or If-None-Exist, matched a contact recorded"
                " earlier: it is answered as it stands and nothing is written",
            }
    headers = WRITE_HEADERS if contact else {k: v for k, v in WRITE_HEADERS.items() if k != "Warning"}
    for status, answer in operation["responses"].items():
        if status.startswith("2"):
            answer["headers"] = headers
            answer["content"][FHIR_JSON]["schema"] = {
                "oneOf": [{"type": "object", "required": ["resourceType"]}, OUTCOME_REF]
            }


def _success(operation: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    for status, answer in sorted(operation["responses"].items()):
        if status.startswith("2"):
            return status, answer
    return None


def _add_example(path: str, method: str, operation: dict[str, Any], components: dict[str, Any]) -> None:
    success = _success(operation)
    if success is None:
        return
    status, answer = success
    content = answer.setdefault("content", {})
    fhir = examples.fhir_answer(path, method)
    if fhir is not None:
        content.pop("application/json", None)
        content[FHIR_JSON] = {"schema": {"type": "object", "required": ["resourceType"]}, "example": fhir}
        return
    if path == "/api/outcomes.csv":  # a spreadsheet's text, not JSON
        answer["content"] = {"text/csv": {"schema": {"type": "string"}, "example": examples.OUTCOMES_CSV}}
        return
    if status == "204":
        answer.pop("content", None)
        body = operation.get("requestBody", {}).get("content", {}).get("application/json")
        if body is not None and "example" not in body:
            body["example"] = examples.REQUESTS.get((method, path)) or _schema_example(body["schema"], components)
        return
    media = content.setdefault("application/json", {"schema": {}})
    value = examples.JSON_ANSWERS.get((method, path)) or _schema_example(media.get("schema"), components)
    if value is not None:
        media["example"] = value
    body = operation.get("requestBody", {}).get("content", {}).get("application/json")
    if body is not None and "example" not in body:
        body["example"] = examples.REQUESTS.get((method, path)) or _schema_example(body["schema"], components)


def enrich(app: FastAPI, document: dict[str, Any], settings: Settings) -> dict[str, Any]:
    document = copy.deepcopy(document)
    components = document.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    schemas["OperationOutcome"] = OPERATION_OUTCOME_SCHEMA
    routes: dict[tuple[str, str], Route] = {}
    for context in iter_route_contexts(app.routes):
        found = _get_api_route_for_openapi(context)
        if found is not None and found.include_in_schema:
            routes |= {(found.path_format, method.lower()): found for method in found.methods}
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            route = routes[(path, method)]
            body = _fhir_body(path, method)
            if body is not None:
                operation["requestBody"] = body
            _add_example(path, method, operation, schemas)
            if path.startswith(("/fhir/Encounter", "/fhir/Consent")) and method in ("post", "put"):
                _document_write(path, method, operation)
            responses = operation["responses"]
            if "requestBody" not in operation:  # a query or path fault is a 400 (main.py's handler), never a 422
                responses.pop("422", None)
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "path":
                    parameter.setdefault("example", examples.word(parameter["name"]))
            for status in _statuses(path, method, operation, route):
                responses[str(status)] = error_response(status)
            if path == "/auth/token":
                responses.pop("422", None)
                responses |= OAUTH_ERRORS
            for status, answer in responses.items():  # a 503 a route documents (readiness) is an OperationOutcome too
                if status.startswith("5") and not answer.get("content"):
                    answer["content"] = {FHIR_JSON: {"schema": OUTCOME_REF}}
            errors = ", ".join(s for s in sorted(responses) if s.startswith(("4", "5")))
            endpoint_doc = inspect.getdoc(route.endpoint)
            said = [operation.get("summary", route.name) + "."]
            if endpoint_doc:
                said.append(endpoint_doc)
            said.append(f"**Who may call:** {who_may_call(route)}.")
            if body is not None:
                said.append(f"**Body:** {body['description']} Send `Content-Type: {FHIR_JSON}`.")
            if errors:
                said.append(f"**Errors** ({errors}) are OperationOutcomes; `expression` names the element at fault.")
            operation["description"] = "\n\n".join(said)
    _add_openid_connect(document, settings)
    return document


def _add_openid_connect(document: dict[str, Any], settings: Settings) -> None:
    """People sign in at their organization's provider; Swagger's Authorize does it with PKCE when told where."""
    if settings.docs_openid_url is None:
        return
    document["components"].setdefault("securitySchemes", {})["openIdConnect"] = {
        "type": "openIdConnect",
        "openIdConnectUrl": settings.docs_openid_url,
        "description": "Sign in at your organization's OpenID Connect provider (authorization code with PKCE); "
        "Peerway checks the access token and looks you up in its registry (docs/sign-in.md).",
    }
    for methods in document["paths"].values():
        for operation in methods.values():
            if {"bearer": []} in operation.get("security", []):
                operation["security"].append({"openIdConnect": ["openid"]})


def in_order(document: dict[str, Any], paths: list[str]) -> dict[str, Any]:
    """The document with its paths in the given order (those it has and the list lacks last, as they were)."""
    given: dict[str, Any] = document.get("paths", {})
    ordered = {path: given[path] for path in dict.fromkeys(paths) if path in given}
    document["paths"] = ordered | {path: item for path, item in given.items() if path not in ordered}
    return document


def install(app: FastAPI, settings: Settings) -> None:
    """app.openapi() answers the enriched document (built once); Swagger's Authorize uses PKCE."""

    plain = app.openapi  # FastAPI's own, which caches its document in app.openapi_schema
    enriched: list[dict[str, Any]] = []
    # The paths in the order the routes were listed: create_app then moves the busiest first for matching.
    documented = route_paths(app.router.routes)

    def openapi() -> dict[str, Any]:
        if not enriched:
            enriched.append(enrich(app, in_order(plain(), documented), settings))
            app.openapi_schema = enriched[0]
        return enriched[0]

    app.description = DESCRIPTION
    app.openapi = openapi  # type: ignore[method-assign]
    app.swagger_ui_init_oauth = {"usePkceWithAuthorizationCodeGrant": True, "scopes": "openid"}
    if settings.docs_client_id:
        app.swagger_ui_init_oauth["clientId"] = settings.docs_client_id


DESCRIPTION = f"""FHIR R4 (4.0.1) integration for Transitional Discharge Model peer-support programs.

FHIR answers are `{FHIR_JSON}`; every error is an OperationOutcome whose `expression` names the element at fault.
Peerway's profiles: `{fhir_profiles.CANONICAL}` (served at /fhir/StructureDefinition). People sign in with their
organization's OpenID Connect provider; systems use SMART Backend Services (`POST /auth/token`)."""
