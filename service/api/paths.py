"""Ids in FHIR paths: every path parameter of a /fhir route is a resource id (or a version id, also an id), so
one app-wide dependency refuses what is not a FHIR id (service/fhir/ids.py) with a 400 naming it, before any
route looks it up or hands it on to an EHR."""

from __future__ import annotations

from fastapi import Request

from service.errors import BadRequest
from service.fhir.ids import ID_RULE, is_fhir_id


async def fhir_ids_in_path(request: Request) -> None:
    # The scope's path, not request.url's: building the URL (host, scheme, query) cost ~1 % of a summary read.
    if not request.scope["path"].startswith("/fhir/"):
        return
    for name, value in request.path_params.items():
        if not isinstance(value, str) or not is_fhir_id(value):
            raise BadRequest(f"path.{name}: {ID_RULE}", f"path.{name}")
