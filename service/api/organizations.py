"""Peer organizations' coordinators (role organization-coordinator): their own peers and nothing else.

They register peers (choosing their sites), enable or disable them per site, keep their profiles and status
(which hold at every site a peer serves: only the owning organization changes them) and read their caseloads —
client ids, sites and contact minutes, never a client's record. Another organization's peer is a 404 like a
missing one.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from service.api.admin import PersonOut, StatusChange, person_out
from service.api.deps import OrgCoordinator, SessionsDep, scope
from service.api.matching import ProfileIn, ProfileOut, StatusIn, profile_from, profile_out
from service.api.text import Input
from service.app import matching as use
from service.app import peers, registry
from service.auth import Role

router = APIRouter(prefix="/api/org", tags=["peer organizations"])
# A peer organization's back end (a system client) needs these scopes; its coordinators (people) do not.
READ = Depends(scope("system/PractitionerRole.r"))
UPDATE = Depends(scope("system/PractitionerRole.u"))


class OrgPeerIn(Input):
    name: str = Field(min_length=1, max_length=200)
    sites: list[str] = Field(default_factory=list, max_length=100, description="the sites it is enabled at")


class OrgPeerOut(BaseModel):
    id: str
    name: str
    status: str
    sites: list[str]


def _org_peer(p: peers.OrgPeerView) -> OrgPeerOut:
    return OrgPeerOut(id=p.id, name=p.name, status=p.status, sites=list(p.sites))


@router.post(
    "/peers",
    status_code=201,
    summary="Register one of the organization's peers, at the sites named",
    dependencies=[Depends(scope("system/PractitionerRole.c"))],
)
async def register_org_peer(body: OrgPeerIn, caller: OrgCoordinator, sessions: SessionsDep) -> OrgPeerOut:
    assert caller.organization is not None
    return _org_peer(await peers.register_org_peer(sessions, caller.organization, body.name, body.sites))


@router.get("/peers", summary="The organization's peers and the sites each is enabled at", dependencies=[READ])
async def list_org_peers(caller: OrgCoordinator, sessions: SessionsDep) -> list[OrgPeerOut]:
    assert caller.organization is not None
    return [_org_peer(p) for p in await peers.org_peers(sessions, caller.organization)]


@router.put(
    "/peers/{peer_id}/sites/{site}", summary="Enable one of the organization's peers at a site", dependencies=[UPDATE]
)
async def enable_at_site(peer_id: str, site: str, caller: OrgCoordinator, sessions: SessionsDep) -> OrgPeerOut:
    assert caller.organization is not None
    return _org_peer(await peers.set_peer_site(sessions, caller.organization, peer_id, site, True))


@router.delete(
    "/peers/{peer_id}/sites/{site}",
    summary="Disable a peer at a site: no new clients there (current ones stay until re-matched)",
    dependencies=[UPDATE],
)
async def disable_at_site(peer_id: str, site: str, caller: OrgCoordinator, sessions: SessionsDep) -> OrgPeerOut:
    assert caller.organization is not None
    return _org_peer(await peers.set_peer_site(sessions, caller.organization, peer_id, site, False))


@router.put("/peers/{peer_id}/profile", summary="Set one of the organization's peers' profile", dependencies=[UPDATE])
async def put_org_profile(peer_id: str, body: ProfileIn, caller: OrgCoordinator, sessions: SessionsDep) -> ProfileOut:
    profile, version = await use.update_profile(sessions, profile_from(peer_id, body), organization=caller.organization)
    return profile_out(profile, version)


@router.get("/peers/{peer_id}/profile", summary="One of the organization's peers' profile", dependencies=[READ])
async def get_org_profile(peer_id: str, caller: OrgCoordinator, sessions: SessionsDep) -> ProfileOut:
    stored = await use.read_profile(sessions, peer_id, organization=caller.organization)
    return profile_out(stored.profile, stored.version)


@router.put(
    "/peers/{peer_id}/status",
    summary="Pause, resume or retire one of the organization's peers",
    dependencies=[UPDATE],
)
async def put_org_status(peer_id: str, body: StatusIn, caller: OrgCoordinator, sessions: SessionsDep) -> StatusIn:
    updated = await use.set_status(sessions, peer_id, body.status, organization=caller.organization)
    return StatusIn(status=updated.status)


class OrgClientLoadOut(BaseModel):
    client_id: str
    site: str
    minutes_last_7_days: int
    below_weekly_minimum: bool


class OrgCaseloadOut(BaseModel):
    peer_id: str
    name: str
    status: str
    caseload_cap: int
    free_places: int
    clients: list[OrgClientLoadOut]


@router.get(
    "/caseloads",
    summary="The organization's peers: their clients (ids, site) and contact minutes",
    dependencies=[READ],
)
async def org_caseloads(caller: OrgCoordinator, sessions: SessionsDep) -> list[OrgCaseloadOut]:
    assert caller.organization is not None
    return [
        OrgCaseloadOut(
            peer_id=c.peer_id,
            name=c.name,
            status=c.status,
            caseload_cap=c.caseload_cap,
            free_places=c.free_places,
            clients=[
                OrgClientLoadOut(
                    client_id=x.client_id,
                    site=x.site,
                    minutes_last_7_days=x.minutes_last_7_days,
                    below_weekly_minimum=x.below_minimum,
                )
                for x in c.clients
            ],
        )
        for c in await use.organization_caseloads(sessions, caller.organization)
    ]


# --- the organization's peers' sign-ins -------------------------------------------------------------------------


class OrgPersonIn(Input):
    issuer: str = Field(min_length=1, max_length=64, description="the organization's registered issuer")
    subject: str = Field(min_length=1, max_length=255, description="the sub of the peer's tokens")
    peer_id: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=200)


@router.post(
    "/people",
    status_code=201,
    summary="Let one of the organization's peers sign in with the organization's OpenID Connect provider",
    dependencies=[Depends(scope("system/PractitionerRole.c"))],
)
async def add_org_person(body: OrgPersonIn, caller: OrgCoordinator, sessions: SessionsDep) -> PersonOut:
    assert caller.organization is not None
    new = registry.NewPerson(
        issuer_id=body.issuer, subject=body.subject, role=Role.PEER, name=body.name, peer_id=body.peer_id
    )
    return person_out(await registry.add_person(sessions, new, organization_scope=caller.organization))


@router.get("/people", summary="The organization's peers' sign-ins", dependencies=[READ])
async def list_org_people(caller: OrgCoordinator, sessions: SessionsDep) -> list[PersonOut]:
    assert caller.organization is not None
    return [person_out(v) for v in await registry.list_people(sessions, organization_scope=caller.organization)]


@router.put("/people/{person_id}/status", summary="Disable (or enable again) a peer's sign-in", dependencies=[UPDATE])
async def org_person_status(
    person_id: str, body: StatusChange, caller: OrgCoordinator, sessions: SessionsDep
) -> PersonOut:
    assert caller.organization is not None
    active = body.status == "active"
    view = await registry.set_person_status(sessions, person_id, active, organization_scope=caller.organization)
    return person_out(view)
