"""Tables and queries of intake: subscription channels and the events they carried, and the notifications peers
and coordinators read. (Intake work that needs the EHR is a row of store/jobs.py.)
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
    delete,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from service.store.models import Base, Client, Episode, UTCDateTime


class SubscriptionChannel(Base):
    """One Subscription of one EHR (site) that notifies us, and what we know of its health."""

    __tablename__ = "subscription_channel"
    __table_args__ = (UniqueConstraint("site", "subscription", name="uq_channel_subscription"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    site: Mapped[str] = mapped_column(String(64))
    subscription: Mapped[str] = mapped_column(String(200))  # "Subscription/<id>" on the EHR
    topic: Mapped[str | None] = mapped_column(String(500))
    ehr_status: Mapped[str | None] = mapped_column(String(32))  # as the EHR last reported it
    form: Mapped[str | None] = mapped_column(String(16))  # r4-backport | r4b | r5 (last notification)
    payload: Mapped[str | None] = mapped_column(String(16))  # what we asked for, when we created it
    created_by_peerway: Mapped[bool] = mapped_column(Boolean)
    heartbeat_seconds: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    handshake_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    events_since_start: Mapped[int | None] = mapped_column(BigInteger)  # as last reported
    highest_event: Mapped[int] = mapped_column(BigInteger)  # the highest event number known to exist
    contiguous_through: Mapped[int] = mapped_column(BigInteger)  # every event up to here is accounted for
    last_event_at: Mapped[datetime | None] = mapped_column(UTCDateTime())  # EHR time of the newest event
    search_cursor: Mapped[datetime | None] = mapped_column(UTCDateTime())  # newest lastUpdated found by search
    silent_since: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_recovery_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_recovery_note: Mapped[str | None] = mapped_column(String(300))


class ChannelEvent(Base):
    """An event number of a channel that we hold: received (and applied or queued) or recovered."""

    __tablename__ = "channel_event"

    channel_id: Mapped[str] = mapped_column(ForeignKey("subscription_channel.id"), primary_key=True)
    number: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    occurred_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    outcome: Mapped[str] = mapped_column(String(16))  # applied | queued | acknowledged | recovered
    focus: Mapped[str | None] = mapped_column(String(140))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Notification(Base):
    """Something a peer or the coordinators must know at once (a readmission). Ids and the event only."""

    __tablename__ = "notification"
    __table_args__ = (Index("ix_notification_feed", "audience", "peer_id", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    audience: Mapped[str] = mapped_column(String(16))  # peer | coordinator
    peer_id: Mapped[str | None] = mapped_column(ForeignKey("peer_supporter.id"))
    event: Mapped[str] = mapped_column(String(32))
    client_id: Mapped[str] = mapped_column(ForeignKey("client.id"))
    episode_id: Mapped[str] = mapped_column(ForeignKey("episode.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


# --- queries -------------------------------------------------------------------------------------------------


async def lock_channel(
    session: AsyncSession, site: str, subscription: str, now: datetime
) -> SubscriptionChannel | None:
    """The channel, with its row written first: notifications of one channel then run one at a time.

    The UPDATE takes the row lock on PostgreSQL and the write lock on SQLite before anything is read, so the
    event numbers read next cannot change under us.
    """
    await session.execute(
        update(SubscriptionChannel)
        .where(SubscriptionChannel.site == site, SubscriptionChannel.subscription == subscription)
        .values(last_seen_at=now)
        .execution_options(synchronize_session=False)
    )
    result = await session.execute(
        select(SubscriptionChannel)
        .where(SubscriptionChannel.site == site, SubscriptionChannel.subscription == subscription)
        .execution_options(populate_existing=True)
    )
    return result.scalar_one_or_none()


async def channel_for_update(session: AsyncSession, channel_id: str) -> SubscriptionChannel | None:
    await session.execute(
        update(SubscriptionChannel)
        .where(SubscriptionChannel.id == channel_id)
        .values(id=channel_id)
        .execution_options(synchronize_session=False)
    )
    return await session.get(SubscriptionChannel, channel_id, populate_existing=True)


async def channel_by_subscription(session: AsyncSession, site: str, subscription: str) -> SubscriptionChannel | None:
    result = await session.execute(
        select(SubscriptionChannel).where(
            SubscriptionChannel.site == site, SubscriptionChannel.subscription == subscription
        )
    )
    return result.scalar_one_or_none()


async def channels(session: AsyncSession, site: str | None = None) -> Sequence[SubscriptionChannel]:
    """Every channel, or one site's."""
    query = select(SubscriptionChannel).order_by(SubscriptionChannel.created_at)
    if site is not None:
        query = query.where(SubscriptionChannel.site == site)
    return (await session.execute(query)).scalars().all()


async def event_numbers_above(session: AsyncSession, channel_id: str, above: int) -> set[int]:
    result = await session.execute(
        select(ChannelEvent.number).where(ChannelEvent.channel_id == channel_id, ChannelEvent.number > above)
    )
    return set(result.scalars().all())


async def forget_events(session: AsyncSession, channel_id: str) -> None:
    """The Subscription started over (a handshake counting from zero again): its old numbers mean nothing."""
    await session.execute(delete(ChannelEvent).where(ChannelEvent.channel_id == channel_id))


async def event_time_at_or_below(session: AsyncSession, channel_id: str, number: int) -> datetime | None:
    """When the newest event at or below `number` happened (EHR time), to search from just before a gap."""
    result = await session.execute(
        select(ChannelEvent.occurred_at)
        .where(
            ChannelEvent.channel_id == channel_id,
            ChannelEvent.number <= number,
            ChannelEvent.occurred_at.is_not(None),
        )
        .order_by(ChannelEvent.number.desc())
        .limit(1)
    )
    return result.scalar_one_or_none()


async def episode_for_update(session: AsyncSession, client_id: str, ehr_encounter_id: str) -> Episode | None:
    """The episode of this stay, locked for the rest of the transaction (PostgreSQL; SQLite serialises writers)."""
    result = await session.execute(
        select(Episode)
        .where(Episode.client_id == client_id, Episode.ehr_encounter_id == ehr_encounter_id)
        .with_for_update()
    )
    return result.scalar_one_or_none()


async def feed(
    session: AsyncSession,
    audience: str,
    peer_id: str | None,
    since: datetime | None,
    limit: int,
    *,
    site: str | None = None,
) -> Sequence[Notification]:
    """Notifications for an audience after `since`, oldest first: a peer's own, and/or about one site's clients."""
    query = select(Notification).where(Notification.audience == audience)
    query = query.where(Notification.peer_id == peer_id) if peer_id is not None else query
    if site is not None:
        query = query.join(Client, Client.id == Notification.client_id).where(Client.site == site)
    if since is not None:
        query = query.where(Notification.created_at > since)
    result = await session.execute(query.order_by(Notification.created_at, Notification.id).limit(limit))
    return result.scalars().all()


async def on_ward_with_expected_discharge(
    session: AsyncSession, peer_id: str | None = None, *, site: str | None = None
) -> Sequence[Episode]:
    """Stays on the ward with an expected discharge date: a peer's, and/or of one site's clients."""
    query = select(Episode).where(Episode.state == "on-ward", Episode.expected_discharge_at.is_not(None))
    if peer_id is not None:
        query = query.where(Episode.peer_id == peer_id)
    if site is not None:
        query = query.join(Client, Client.id == Episode.client_id).where(Client.site == site)
    result = await session.execute(query.order_by(Episode.expected_discharge_at, Episode.id))
    return result.scalars().all()
