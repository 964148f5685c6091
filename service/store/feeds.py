"""Tables for HL7 v2 feeds: the registered feeds (which site a listener port, or a sending facility on it,
speaks for) with their health, and the messages already answered (a replay of MSH-10 gets the first answer).

The message row keeps ids only (control id, patient ids of a merge), never a segment's contents.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String, Text, UniqueConstraint, select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from service.store.models import Base, UTCDateTime

ANY_FACILITY = ""  # a feed bound to the whole port: every sender on it speaks for the feed's site


class Hl7Feed(Base):
    __tablename__ = "hl7_feed"
    __table_args__ = (UniqueConstraint("port", "facility", name="uq_hl7_feed_port_facility"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    site: Mapped[str] = mapped_column(ForeignKey("site.id"))
    port: Mapped[int] = mapped_column(Integer)
    facility: Mapped[str] = mapped_column(String(200))  # MSH-4 (its first component); "" for the whole port
    timezone: Mapped[str] = mapped_column(String(64))  # for times sent without an offset
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_message_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_error_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(Text)  # the ACK text and ERR location: no message content
    accepted: Mapped[int] = mapped_column(Integer, default=0)
    refused: Mapped[int] = mapped_column(Integer, default=0)


class Hl7Message(Base):
    """One message already answered, keyed by its sender (MSH-3^MSH-4) and MSH-10 within the feed's site."""

    __tablename__ = "hl7_message"

    site: Mapped[str] = mapped_column(String(64), primary_key=True)
    sender: Mapped[str] = mapped_column(String(400), primary_key=True)
    control_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    feed_id: Mapped[str] = mapped_column(ForeignKey("hl7_feed.id"), index=True)
    trigger: Mapped[str] = mapped_column(String(8))
    ack_code: Mapped[str] = mapped_column(String(2))
    ack_text: Mapped[str] = mapped_column(Text)
    error_location: Mapped[str | None] = mapped_column(String(64))  # segment^sequence^field^code
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    merged_patient_id: Mapped[str | None] = mapped_column(String(200))  # A40: MRG-1
    surviving_patient_id: Mapped[str | None] = mapped_column(String(64))  # A40: PID-3


async def feed_for(session: AsyncSession, port: int, facility: str) -> Hl7Feed | None:
    """The feed a message belongs to: its facility's feed on this port, else the port's own feed. None also when
    the port's feeds are of more than one site (registered before add_feed refused that): MSH-4 is content, and
    content never chooses between sites."""
    rows = (await session.execute(select(Hl7Feed).where(Hl7Feed.port == port))).scalars().all()
    if len({row.site for row in rows}) > 1:
        return None
    exact = [row for row in rows if row.facility == facility]
    chosen = exact or [row for row in rows if row.facility == ANY_FACILITY]
    return chosen[0] if chosen else None


async def lock_port(session: AsyncSession, port: int) -> None:
    """Serialise registrations on one port until the transaction ends (PostgreSQL; SQLite has one writer)."""
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(
            text("SELECT pg_advisory_xact_lock(hashtext('peerway.hl7_feed.port'), :port)"), {"port": port}
        )


async def feeds(session: AsyncSession, site: str | None = None) -> Sequence[Hl7Feed]:
    query = select(Hl7Feed).order_by(Hl7Feed.port, Hl7Feed.facility)
    if site is not None:
        query = query.where(Hl7Feed.site == site)
    return (await session.execute(query)).scalars().all()


async def answered(session: AsyncSession, site: str, sender: str, control_id: str) -> Hl7Message | None:
    return await session.get(Hl7Message, (site, sender, control_id))


async def merges(session: AsyncSession, feed_ids: Sequence[str], limit: int = 50) -> Sequence[Hl7Message]:
    query = (
        select(Hl7Message)
        .where(Hl7Message.feed_id.in_(feed_ids), Hl7Message.merged_patient_id.is_not(None))
        .order_by(Hl7Message.received_at.desc())
        .limit(limit)
    )
    return (await session.execute(query)).scalars().all()
