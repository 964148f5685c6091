"""The registry of who may call Peerway, kept by administrators (role administrator; also `peerway issuer|user|
client` on the command line): the OpenID Connect providers trusted and the sites/organizations each may speak
for, the people registered under them, and the systems registered for SMART Backend Services. An
administrator sees no client's data. A peer organization's coordinators register their own peers' sign-ins
under /api/org/people.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field

from service.api.deps import Administrator, SessionsDep
from service.api.text import Input
from service.app import registry
from service.auth import Role

router = APIRouter(prefix="/api/admin", tags=["administration"])
Id = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9-]*$")


class IssuerIn(Input):
    id: str = Id
    issuer: str = Field(min_length=8, max_length=500, description="the iss its tokens carry (its URL)")
    sites: list[str] = Field(default_factory=list, max_length=100, description="sites it may speak for")
    organizations: list[str] = Field(default_factory=list, max_length=100, description="organizations it may speak for")
    jwks: dict[str, Any] | None = Field(default=None, description="pinned public keys; omit to use discovery")


class IssuerOut(BaseModel):
    id: str
    issuer: str
    pinned_keys: bool
    sites: list[str]
    organizations: list[str]
    status: str


class StatusChange(Input):
    status: Literal["active", "disabled"]


class PersonIn(Input):
    issuer: str = Field(min_length=1, max_length=64, description="the registered issuer's id")
    subject: str = Field(min_length=1, max_length=255, description="the sub of the person's tokens")
    role: Literal["administrator", "coordinator", "organization-coordinator"]
    name: str = Field(min_length=1, max_length=200)
    site: str | None = Field(default=None, max_length=64, description="a coordinator's site")
    organization: str | None = Field(default=None, max_length=64, description="an organization coordinator's")


class PersonOut(BaseModel):
    id: str
    issuer: str
    subject: str
    role: str
    name: str
    site: str | None
    organization: str | None
    peer_id: str | None
    status: str


class ClientIn(Input):
    client_id: str = Field(min_length=1, max_length=128)
    kind: Literal["ehr", "organization"]
    site: str | None = Field(default=None, max_length=64, description="an EHR's site")
    organization: str | None = Field(default=None, max_length=64, description="a back end's organization")
    scopes: list[str] = Field(min_length=1, max_length=20, description="SMART v2 system scopes it may be granted")
    jwks: dict[str, Any] | None = Field(default=None, description="its public keys (JWK Set), or give jwks_url")
    jwks_url: str | None = Field(default=None, max_length=500)


class ClientOut(BaseModel):
    client_id: str
    kind: str
    site: str | None
    organization: str | None
    scopes: list[str]
    keys: str
    status: str


def issuer_out(view: registry.IssuerView) -> IssuerOut:
    return IssuerOut(
        id=view.id,
        issuer=view.issuer,
        pinned_keys=view.pinned_keys,
        sites=list(view.sites),
        organizations=list(view.organizations),
        status=view.status,
    )


def person_out(view: registry.PersonView) -> PersonOut:
    return PersonOut(**view.__dict__)


def client_out(view: registry.ClientView) -> ClientOut:
    return ClientOut(**{**view.__dict__, "scopes": list(view.scopes)})


@router.post("/issuers", status_code=201, summary="Trust an OpenID Connect provider for some sites/organizations")
async def add_issuer(body: IssuerIn, caller: Administrator, sessions: SessionsDep) -> IssuerOut:
    view = await registry.add_issuer(
        sessions,
        body.id,
        body.issuer,
        sites=tuple(body.sites),
        organizations=tuple(body.organizations),
        jwks=body.jwks,
    )
    return issuer_out(view)


@router.get("/issuers", summary="The OpenID Connect providers Peerway trusts")
async def list_issuers(caller: Administrator, sessions: SessionsDep) -> list[IssuerOut]:
    return [issuer_out(v) for v in await registry.list_issuers(sessions)]


@router.put("/issuers/{issuer_id}/status", summary="Disable (or enable again) an issuer: its tokens stop at once")
async def issuer_status(issuer_id: str, body: StatusChange, caller: Administrator, sessions: SessionsDep) -> IssuerOut:
    return issuer_out(await registry.set_issuer_status(sessions, issuer_id, body.status == "active"))


@router.post("/people", status_code=201, summary="Register a coordinator, organization coordinator or administrator")
async def add_person(body: PersonIn, caller: Administrator, sessions: SessionsDep) -> PersonOut:
    new = registry.NewPerson(
        issuer_id=body.issuer,
        subject=body.subject,
        role=Role(body.role),
        name=body.name,
        site=body.site,
        organization=body.organization,
    )
    return person_out(await registry.add_person(sessions, new))


@router.get("/people", summary="Everyone registered to sign in")
async def list_people(caller: Administrator, sessions: SessionsDep) -> list[PersonOut]:
    return [person_out(v) for v in await registry.list_people(sessions)]


@router.put("/people/{person_id}/status", summary="Disable (or enable again) someone: access ends at once")
async def person_status(person_id: str, body: StatusChange, caller: Administrator, sessions: SessionsDep) -> PersonOut:
    return person_out(await registry.set_person_status(sessions, person_id, body.status == "active"))


@router.post("/clients", status_code=201, summary="Register a system for SMART Backend Services")
async def add_client(body: ClientIn, caller: Administrator, sessions: SessionsDep) -> ClientOut:
    new = registry.NewClient(
        client_id=body.client_id,
        kind=body.kind,
        scopes=tuple(body.scopes),
        site=body.site,
        organization=body.organization,
        jwks=body.jwks,
        jwks_url=body.jwks_url,
    )
    return client_out(await registry.add_client(sessions, new))


@router.get("/clients", summary="The systems registered for SMART Backend Services")
async def list_clients(caller: Administrator, sessions: SessionsDep) -> list[ClientOut]:
    return [client_out(v) for v in await registry.list_clients(sessions)]


@router.put("/clients/{client_id}/status", summary="Disable (or enable again) a system: its tokens stop at once")
async def client_status(client_id: str, body: StatusChange, caller: Administrator, sessions: SessionsDep) -> ClientOut:
    return client_out(await registry.set_client_status(sessions, client_id, body.status == "active"))
