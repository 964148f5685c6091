"""Peerway's conformance resources (StructureDefinition, CodeSystem, ValueSet, OperationDefinition,
SearchParameter): read, vread and search by url or _id.

Public, like /fhir/metadata: they describe the interface and hold no information about anyone, and a client or
validator needs them before it has a token.
"""

from __future__ import annotations

from email.utils import format_datetime

from fastapi import APIRouter, Depends, Request, Response

from service.api.deps import SettingsDep
from service.api.fhir_rest import json_only, search_answer, search_form, search_request
from service.api.responses import FHIR_JSON_UTF8
from service.app import conformance
from service.fhir import canonical

router = APIRouter(prefix="/fhir", tags=["conformance"], dependencies=[Depends(json_only)])


def _answer(served: canonical.Served) -> Response:
    headers = {"ETag": f'W/"{served.version_id}"', "Last-Modified": format_datetime(served.last_updated, usegmt=True)}
    return Response(served.body, media_type=FHIR_JSON_UTF8, headers=headers)


def _add_routes(resource_type: str) -> None:
    @router.get(f"/{resource_type}/{{id}}", summary=f"Read one of Peerway's {resource_type}s")
    async def read(id: str) -> Response:
        return _answer(canonical.read(resource_type, id))

    @router.get(f"/{resource_type}/{{id}}/_history/{{vid}}", summary=f"Read a version of a {resource_type}")
    async def vread(id: str, vid: str) -> Response:
        return _answer(canonical.read(resource_type, id, vid))

    @router.get(f"/{resource_type}", summary=f"Search Peerway's {resource_type}s by url or _id")
    async def search(request: Request, settings: SettingsDep) -> Response:
        wanted = search_request(request, resource_type)
        return search_answer(settings, wanted, conformance.search(wanted))

    @router.post(f"/{resource_type}/_search", summary=f"Search Peerway's {resource_type}s, parameters in a form")
    async def search_by_post(request: Request, settings: SettingsDep) -> Response:
        wanted = await search_form(request, settings, resource_type)
        return search_answer(settings, wanted, conformance.search(wanted))


for _type in canonical.SERVED_TYPES:
    _add_routes(_type)
