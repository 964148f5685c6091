"""Coordinators register peer supporters and assign one to a client's episode by hand; peer organizations
register their own peers and choose the sites each is enabled for.

Scope: a site's coordinator reaches only episodes of the site's clients and only peers enabled at the site; an
organization's coordinator reaches only the organization's peers. Anything else is the same NotFound as
something that does not exist (`episode_in_scope`, `peer_at_site`, `peer_of_organization`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from service.app import page_links, profiles
from service.app.clock import new_id, utcnow
from service.app.uow import unit_of_work
from service.domain import matching
from service.domain.episode import Episode as EpisodeAggregate
from service.domain.matching import PeerProfile
from service.errors import BadRequest, Forbidden, InvalidResource, NotFound
from service.store import repository
from service.store.db import SessionFactory, transaction
from service.store.matching import EpisodeClosure
from service.store.models import Episode, PeerSupporter
from service.store.sites import DEFAULT_ORGANIZATION, PeerOrganization, PeerSite, Site, sites_of_peer


@dataclass(frozen=True)
class PeerView:
    id: str
    name: str
    status: str

    @property
    def practitioner(self) -> str:
        """How a Consent names this peer (Consent.provision.actor.reference)."""
        return f"Practitioner/{self.id}"


@dataclass(frozen=True)
class OrgPeerView:
    """An organization's peer as its coordinator sees it: where it is enabled, nothing of any client."""

    id: str
    name: str
    status: str
    sites: tuple[str, ...]


@dataclass(frozen=True)
class EpisodeView:
    id: str
    client_id: str
    state: str
    admitted_at: datetime | None
    discharged_at: datetime | None
    discharge_disposition: str | None
    peer_id: str | None
    ended_at: datetime | None = None  # when the program ended it (None: open)
    end_reason: str | None = None


@dataclass(frozen=True)
class EpisodePage:
    episodes: Sequence[EpisodeView]
    next_after: str | None  # where the next page starts (page_links), None on the last page


def _peer(p: PeerSupporter) -> PeerView:
    return PeerView(id=p.id, name=p.name, status=p.status)


def episode_view(
    e: Episode | EpisodeAggregate | repository.EpisodeRow, closure: EpisodeClosure | None = None
) -> EpisodeView:
    ended_at, reason = (closure.ended_at, closure.reason) if closure is not None else (None, None)
    if isinstance(e, EpisodeAggregate) and e.closure is not None:
        ended_at, reason = e.closure.ended_at, e.closure.reason
    elif isinstance(e, repository.EpisodeRow):
        ended_at, reason = e.ended_at, e.end_reason
    return EpisodeView(
        id=e.id,
        client_id=e.client_id,
        state=e.state,
        admitted_at=e.admitted_at,
        discharged_at=e.discharged_at,
        discharge_disposition=e.discharge_disposition,
        peer_id=e.peer_id,
        ended_at=ended_at,
        end_reason=reason,
    )


# --- scope ---------------------------------------------------------------------------------------------------


async def episode_in_scope(
    session: AsyncSession, site: str, episode_id: str, *, for_update: bool = False, open_only: bool = False
) -> Episode:
    """The episode if its client belongs to the site (and, with open_only, it has not ended); else NotFound,
    worded the same whether the episode is another site's or does not exist."""
    episode = await repository.episode_at(session, site, episode_id, for_update=for_update)
    if open_only:
        if episode is None or await session.get(EpisodeClosure, episode_id) is not None:
            raise NotFound(f"no open episode {episode_id}")
    elif episode is None:
        raise NotFound(f"no episode {episode_id}")
    return episode


async def peer_at_site(session: AsyncSession, site: str, peer_id: str) -> PeerSupporter:
    """A peer enabled at the site; NotFound otherwise (another organization's peer looks like no peer)."""
    peer = await session.get(PeerSupporter, peer_id)
    if peer is None or not await repository.peer_enabled_at(session, peer_id, site):
        raise NotFound(f"no peer supporter {peer_id}")
    return peer


async def peer_of_organization(session: AsyncSession, organization: str, peer_id: str) -> PeerSupporter:
    peer = await repository.peer_of_organization(session, organization, peer_id)
    if peer is None:
        raise NotFound(f"no peer supporter {peer_id}")
    return peer


async def _registered_sites(session: AsyncSession, names: Sequence[str], expression: str) -> list[str]:
    chosen = list(dict.fromkeys(names))
    for name in chosen:
        row = await session.get(Site, name)
        if row is None or row.status != "active":
            raise InvalidResource(f"{name} is not a registered, active site", expression)
    return chosen


# --- registering peers ----------------------------------------------------------------------------------------


async def _add_peer(session: AsyncSession, name: str, organization: str, sites: Sequence[str]) -> PeerSupporter:
    if not name.strip():
        raise InvalidResource("a peer supporter needs a name", "name")
    now = utcnow()
    peer = PeerSupporter(id=new_id(), name=name.strip(), status="active", created_at=now, organization_id=organization)
    session.add(peer)
    await session.flush()
    for site in sites:
        session.add(PeerSite(peer_id=peer.id, site_id=site, enabled_at=now))
    profiles.store_profile(session, PeerProfile(peer_id=peer.id, name=peer.name), now, None)
    return peer


async def register_peer(sessions: SessionFactory, site: str, name: str) -> PeerView:
    """A site's coordinator adds a peer supporter (active from now, with a default profile to complete): it
    belongs to the "default" organization and is enabled at the coordinator's site."""
    async with transaction(sessions) as session:
        row = await session.get(Site, site)
        if row is None or row.status != "active":
            raise Forbidden(f"site {site} is not registered or is disabled")
        peer = await _add_peer(session, name, DEFAULT_ORGANIZATION, [site])
    return _peer(peer)


async def register_org_peer(
    sessions: SessionFactory, organization: str, name: str, sites: Sequence[str]
) -> OrgPeerView:
    """An organization's coordinator adds one of its peers, enabled at the sites named (possibly none yet)."""
    async with transaction(sessions) as session:
        if await session.get(PeerOrganization, organization) is None:
            raise Forbidden(f"organization {organization} is not registered")
        chosen = await _registered_sites(session, sites, "sites")
        peer = await _add_peer(session, name, organization, chosen)
    return OrgPeerView(peer.id, peer.name, peer.status, tuple(sorted(chosen)))


async def org_peers(sessions: SessionFactory, organization: str) -> list[OrgPeerView]:
    async with sessions() as session:
        return [
            OrgPeerView(p.id, p.name, p.status, tuple(await sites_of_peer(session, p.id)))
            for p in await repository.peers(session, organization=organization)
        ]


async def set_peer_site(
    sessions: SessionFactory, organization: str, peer_id: str, site: str, enabled: bool
) -> OrgPeerView:
    """Enable or disable one of the organization's peers at a site. Disabling stops new matches there; the
    clients the peer already has at that site stay theirs until a coordinator re-matches or ends the episode."""
    async with transaction(sessions) as session:
        peer = await peer_of_organization(session, organization, peer_id)
        current = await session.get(PeerSite, (peer.id, site))
        if enabled and current is None:
            await _registered_sites(session, [site], "site")
            session.add(PeerSite(peer_id=peer.id, site_id=site, enabled_at=utcnow()))
        elif not enabled and current is not None:
            await session.delete(current)
        await session.flush()
        return OrgPeerView(peer.id, peer.name, peer.status, tuple(await sites_of_peer(session, peer.id)))


async def move_peer(sessions: SessionFactory, peer_id: str, organization: str) -> OrgPeerView:
    """An operator moves a peer to another organization (`peerway org adopt`), keeping its sites, clients and
    history: how peers of a single-site deployment, all in "default" after the upgrade, reach their own."""
    async with transaction(sessions) as session:
        peer = await session.get(PeerSupporter, peer_id)
        if peer is None:
            raise NotFound(f"no peer supporter {peer_id}")
        if await session.get(PeerOrganization, organization) is None:
            raise InvalidResource(f"no organization {organization}", "organization")
        peer.organization_id = organization
        await session.flush()
        return OrgPeerView(peer.id, peer.name, peer.status, tuple(await sites_of_peer(session, peer.id)))


async def list_peers(sessions: SessionFactory, site: str) -> Sequence[PeerView]:
    """The peers enabled at the site (whatever their organization)."""
    async with sessions() as session:
        return [_peer(p) for p in await repository.peers(session, site=site)]


EPISODE_PAGE = 500  # episodes a page of GET /api/episodes holds unless asked for fewer (or up to 1,000)


async def list_episodes(
    sessions: SessionFactory,
    site: str,
    *,
    limit: int = EPISODE_PAGE,
    after: str | None = None,
    ended: bool | None = None,
) -> EpisodePage:
    """A page of the site's episodes, oldest first; `after`: the previous page's next_after (a 422 naming `after`
    when it is not one); `ended`: only those the program ended, or only the open ones."""
    key = None if after is None else page_links.key_of(after)
    if after is not None and key is None:
        raise BadRequest("after is not where a page of episodes starts: follow the Link header", "after")
    async with sessions() as session:
        rows, more = await repository.site_episodes_page(session, site, limit, key, ended=ended)
    return EpisodePage([episode_view(row) for row in rows], None if more is None else page_links.key_text(more))


async def get_episode(sessions: SessionFactory, site: str, episode_id: str) -> EpisodeView:
    async with sessions() as session:
        episode = await episode_in_scope(session, site, episode_id)
        return episode_view(episode, await session.get(EpisodeClosure, episode_id))


async def assign_peer(
    sessions: SessionFactory,
    site: str,
    episode_id: str,
    peer_id: str,
    *,
    suggested: bool = False,
    score: float | None = None,
) -> EpisodeView:
    """Assign a peer to the episode (replacing any earlier one), by hand or confirming a suggestion.

    The hard rules of matching hold either way: the peer is enabled at the client's site, active, has a free
    place, was not excluded by the client and was not re-matched away from this client before. Every change is
    kept in the episode's assignment history.
    """
    async with unit_of_work(sessions) as uow:
        session = uow.session
        episode = await uow.episodes.get(episode_id, site=site, for_update=True)
        if episode is None or episode.closed:
            raise NotFound(f"no open episode {episode_id}")
        peer = await session.get(PeerSupporter, peer_id)
        if peer is None or not await repository.peer_enabled_at(session, peer_id, site):
            raise InvalidResource(f"no peer supporter {peer_id} is enabled at this site", "peer_id")
        if episode.peer_id == peer.id:
            return episode_view(episode)
        candidate = await profiles.candidate(session, peer.id)
        preferences = await profiles.preferences_of(session, episode.id, episode.client_id)
        tried = episode.rematched_peers()
        why = "has no profile" if candidate is None else matching.exclusion(preferences, candidate, tried)
        if why is not None:
            raise InvalidResource(f"{peer.name} cannot be assigned: {why}", "peer_id")
        episode.assign(peer.id, utcnow(), suggested=suggested, score=score)
    return episode_view(episode)


async def clients_of_peer(sessions: SessionFactory, peer_id: str) -> Sequence[str]:
    """Client ids whose current episode has this peer assigned (nothing else: the rest is consent's)."""
    async with sessions() as session:
        found: list[str] = []
        for episode in await repository.episodes(session, peer_id=peer_id):
            current = await repository.current_episode(session, episode.client_id)
            if current is not None and current.id == episode.id and episode.client_id not in found:
                found.append(episode.client_id)
        return found
