"""The web app's server-side sessions: the cookie holds only an opaque id; this row holds who signed in, the
CSRF token, and while an OpenID Connect sign-in is under way its state, nonce and PKCE verifier.

The id is stored hashed (SHA-256), so a leaked table or backup cannot be replayed as cookies."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime

from sqlalchemy import Index, Select, String, delete, exists, func, literal, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from service.store.matching import EpisodeClosure
from service.store.models import Base, Client, Contact, Episode, UTCDateTime


class WebSession(Base):
    __tablename__ = "web_session"
    __table_args__ = (Index("ix_web_session_expires", "expires_at"),)

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    csrf: Mapped[str] = mapped_column(String(64))
    # Empty until signed in. Who: the Principal's fields (person_id set for an OpenID Connect sign-in).
    role: Mapped[str | None] = mapped_column(String(32))
    subject: Mapped[str | None] = mapped_column(String(64))
    site: Mapped[str | None] = mapped_column(String(64))
    organization: Mapped[str | None] = mapped_column(String(64))
    person_id: Mapped[str | None] = mapped_column(String(64))
    display_name: Mapped[str | None] = mapped_column(String(200))
    dev: Mapped[bool] = mapped_column(default=False)
    # An OpenID Connect sign-in under way: the issuer's row, the state, nonce and PKCE code verifier.
    pending_issuer: Mapped[str | None] = mapped_column(String(64))
    pending_state: Mapped[str | None] = mapped_column(String(128))
    pending_nonce: Mapped[str | None] = mapped_column(String(128))
    pending_verifier: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())


async def forget_expired(session: AsyncSession, now: datetime) -> None:
    await session.execute(delete(WebSession).where(WebSession.expires_at < now))


# --- what the desk and the peer's screens list (read-only queries) ------------------------------------------


EpisodeKey = tuple[datetime, str]  # (ended_at, id): where a page of ended episodes starts


async def site_episodes(
    session: AsyncSession,
    site: str,
    episode_id: str | None = None,
    *,
    ended: bool | None = None,
    ids: Collection[str] | None = None,
) -> Sequence[tuple[Episode, Client, bool, datetime | None]]:
    """Each episode of the site's clients (or the one named, or those of `ids`), newest first, with whether the
    program ended it and the time of its latest contact (None: none yet); `ended`: only those it ended (True) or
    only the open ones (False)."""
    if ids is None:
        query = site_episodes_query(site, episode_id, ended=ended)
    else:
        # Found by their keys, then kept only if of the site: with the site in the statement, SQLite's planner
        # (no statistics) read every episode of the site to find them, 50 ms for a page of 50 with 20,000.
        query = site_episodes_query(None, episode_id, ended=ended).where(Episode.id.in_(sorted(ids)))
    rows = (await session.execute(query)).all()
    return [(e, c, bool(closed), last) for e, c, closed, last in rows if c.site == site]


async def ended_site_episodes(
    session: AsyncSession, site: str, limit: int, before: EpisodeKey | None = None
) -> tuple[Sequence[tuple[Episode, Client, bool, datetime | None]], EpisodeKey | None]:
    """A page of the site's ended episodes, the most recently ended first (after `before`, when given), and the
    key the next page starts from (None: this is the last). Keyed by when the program ended each and its id,
    which never change, so a page walk neither skips nor repeats one whatever happens to them meanwhile. The
    ended ones grow with every year the program runs; the open ones are the program's working set, listed whole."""
    # The page's ids first, then their rows: the latest contact is looked up for the page only, not for every
    # ended episode before the sort (198 ms with 20,000 of them on SQLite).
    keys = [
        (ended_at, episode_id) for ended_at, episode_id in await session.execute(ended_page_query(site, limit, before))
    ]
    more = len(keys) > limit
    keys = keys[:limit]
    found = await site_episodes(session, site, ended=True, ids={episode_id for _, episode_id in keys})
    by_id = {row[0].id: row for row in found}
    return [by_id[episode_id] for _, episode_id in keys if episode_id in by_id], (keys[-1] if more else None)


def ended_page_query(site: str, limit: int, before: EpisodeKey | None = None) -> Select[datetime, str]:
    """The keys of a page of the site's ended episodes (one more than `limit`, to tell whether another follows).

    The closures are walked latest ended first by ix_episode_closure_ended, each kept if its client is of the
    site, until the page is full: 0.3 ms with 20,000 ended episodes on SQLite. Joined from the site's clients
    instead, every ended episode was read and sorted for each page (60-140 ms)."""
    of_site = exists().where(
        Episode.id == EpisodeClosure.episode_id, Client.id == Episode.client_id, Client.site == site
    )
    page = (
        select(EpisodeClosure.ended_at, EpisodeClosure.episode_id)
        .where(of_site)
        .order_by(EpisodeClosure.ended_at.desc(), EpisodeClosure.episode_id.desc())
        .limit(limit + 1)
    )
    if before is not None:
        page = page.where(
            tuple_(EpisodeClosure.ended_at, EpisodeClosure.episode_id)
            < tuple_(literal(before[0], EpisodeClosure.ended_at.type), literal(before[1], Episode.id.type))
        )
    return page


def site_episodes_query(
    site: str | None, episode_id: str | None = None, *, ended: bool | None = None
) -> Select[Episode, Client, bool, datetime | None]:
    """Episodes with their client, whether ended and the latest contact's time; of one site (None: the caller
    keeps only its site's rows)."""
    # Each listed episode's own contacts, by ix_contact_episode_id: a grouped subquery over the whole contact
    # table was built on every call (354 ms for one client's page with 360,000 contacts, against 0.02 ms).
    last_contact = (
        select(func.max(Contact.started_at))
        .where(Contact.episode_id == Episode.id, Contact.status != "entered-in-error")
        .correlate(Episode)
        .scalar_subquery()
    )
    query = (
        select(Episode, Client, EpisodeClosure.episode_id.is_not(None), last_contact)
        .join(Client, Client.id == Episode.client_id)
        .outerjoin(EpisodeClosure, EpisodeClosure.episode_id == Episode.id)
        .order_by(Episode.updated_at.desc(), Episode.id)
    )
    if site is not None:
        query = query.where(Client.site == site)
    if episode_id is not None:
        query = query.where(Episode.id == episode_id)
    if ended is not None:
        query = query.where(EpisodeClosure.episode_id.is_not(None) if ended else EpisodeClosure.episode_id.is_(None))
    return query


async def contacts_of_episode(session: AsyncSession, episode_id: str, peer_id: str | None = None) -> Sequence[Contact]:
    """An episode's contacts, newest first (a peer's own only, when peer_id is given)."""
    query = select(Contact).where(Contact.episode_id == episode_id)
    if peer_id is not None:
        query = query.where(Contact.peer_id == peer_id)
    return (await session.execute(query.order_by(Contact.started_at.desc(), Contact.id))).scalars().all()


async def peer_open_episodes(session: AsyncSession, peer_id: str) -> Sequence[tuple[Episode, Client]]:
    """The open episodes a peer is assigned to, oldest assignment first."""
    query = (
        select(Episode, Client)
        .join(Client, Client.id == Episode.client_id)
        .outerjoin(EpisodeClosure, EpisodeClosure.episode_id == Episode.id)
        .where(Episode.peer_id == peer_id, EpisodeClosure.episode_id.is_(None))
        .order_by(Episode.assigned_at, Episode.id)
    )
    return [(e, c) for e, c in (await session.execute(query)).all()]
