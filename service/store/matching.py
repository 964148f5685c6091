"""Tables for matching: peer profiles, clients' matching preferences, assignment history, episode endings."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ColumnElement, Float, ForeignKey, Index, Integer, String, Text, exists
from sqlalchemy.orm import InstrumentedAttribute, Mapped, mapped_column

from service.domain.vocabulary import ADMISSION_CANCELLED
from service.store.models import Base, UTCDateTime


class PeerProfileRecord(Base):
    """A peer supporter's profile, stored as the FHIR Practitioner and PractitionerRole that describe it."""

    __tablename__ = "peer_profile"

    peer_id: Mapped[str] = mapped_column(ForeignKey("peer_supporter.id"), primary_key=True)
    practitioner_json: Mapped[str] = mapped_column(Text)
    role_json: Mapped[str] = mapped_column(Text)
    version: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ClientPreference(Base):
    """What the client agreed to share for matching, per episode (nothing clinical)."""

    __tablename__ = "client_preference"

    episode_id: Mapped[str] = mapped_column(ForeignKey("episode.id"), primary_key=True)
    preference_json: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Assignment(Base):
    """One period of a peer with an episode: how it began (suggested or by hand) and how it ended."""

    __tablename__ = "assignment"
    __table_args__ = (Index("ix_assignment_episode", "episode_id", "started_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    episode_id: Mapped[str] = mapped_column(ForeignKey("episode.id"))
    peer_id: Mapped[str] = mapped_column(ForeignKey("peer_supporter.id"))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    suggested: Mapped[bool] = mapped_column(Boolean)
    score: Mapped[float | None] = mapped_column(Float)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    end_kind: Mapped[str | None] = mapped_column(String(32))  # rematch | episode-ended | replaced
    end_reason: Mapped[str | None] = mapped_column(String(32))
    requested_by: Mapped[str | None] = mapped_column(String(16))  # client | peer | coordinator
    note: Mapped[str | None] = mapped_column(Text)


class EpisodeClosure(Base):
    """An episode the program has ended (completed, client withdrew, no contact); its peer's place is free."""

    __tablename__ = "episode_closure"
    # The desk's list of ended episodes, latest ended first, pages through this in order (store/web.py).
    __table_args__ = (Index("ix_episode_closure_ended", "ended_at", "episode_id"),)

    episode_id: Mapped[str] = mapped_column(ForeignKey("episode.id"), primary_key=True)
    ended_at: Mapped[datetime] = mapped_column(UTCDateTime())
    reason: Mapped[str] = mapped_column(String(32))
    note: Mapped[str | None] = mapped_column(Text)


EpisodeId = ColumnElement[str] | InstrumentedAttribute[str]


def _no_closure(episode_id: EpisodeId, *conditions: ColumnElement[bool]) -> ColumnElement[bool]:
    # A look-up of that one episode's closure by its key. (`episode.id NOT IN (SELECT episode_id ... WHERE ...)`
    # read every closure of every client on each call: 9.4 ms a summary read with 50,000 closed episodes on
    # SQLite, against 26 us this way.)
    return ~exists().where(EpisodeClosure.episode_id == episode_id, *conditions)


def not_ended(episode_id: EpisodeId) -> ColumnElement[bool]:
    """True for an episode the program has not ended (for any reason, a cancelled admission included)."""
    return _no_closure(episode_id)


def not_cancelled(episode_id: EpisodeId) -> ColumnElement[bool]:
    """True for an episode whose admission the hospital did not cancel."""
    return _no_closure(episode_id, EpisodeClosure.reason == ADMISSION_CANCELLED)
