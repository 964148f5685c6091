"""Coordinators: the same person's records at other sites, where their consent there allows it."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel, Field

from service.api.deps import Coordinator, SessionsDep, SettingsDep
from service.app import linking

router = APIRouter(prefix="/api", tags=["coordinator"])


class LinkedRecordOut(BaseModel):
    site: str
    client_id: str = Field(description="The person's client id at that site (Patient/<client_id> there)")
    state: str | None
    admitted_at: datetime | None
    discharged_at: datetime | None


class LinksOut(BaseModel):
    client_id: str
    identifier_system: str | None = Field(description="The shared identifier records are linked by (none: never)")
    links: list[LinkedRecordOut]


@router.get(
    "/clients/{client_id}/links",
    summary="The client's records at other sites that their consent there lets this site see (each read audited)",
)
async def client_links(client_id: str, caller: Coordinator, sessions: SessionsDep, settings: SettingsDep) -> LinksOut:
    system = settings.link_identifier_system
    found = await linking.linked_records(sessions, system, caller.site, client_id)
    return LinksOut(
        client_id=client_id,
        identifier_system=system,
        links=[
            LinkedRecordOut(
                site=r.site,
                client_id=r.client_id,
                state=r.state,
                admitted_at=r.admitted_at,
                discharged_at=r.discharged_at,
            )
            for r in found
        ],
    )
