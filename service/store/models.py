"""Typed SQLAlchemy models. FHIR snapshots are kept as JSON text exactly as received (minus nothing)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


def table_of(model: type[Base]) -> Table:
    """A mapped class's table, for Core statements (INSERTs that need none of the ORM's flush machinery)."""
    table = model.__table__
    assert isinstance(table, Table)
    return table


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Client(Base):
    """A person known to the program, keyed by the Patient id of the EHR (site) that sent them."""

    __tablename__ = "client"
    __table_args__ = (UniqueConstraint("site", "ehr_patient_id", name="uq_client_site_patient"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    site: Mapped[str] = mapped_column(String(64))
    ehr_patient_id: Mapped[str] = mapped_column(String(64))
    patient_json: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class PeerSupporter(Base):
    __tablename__ = "peer_supporter"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16))  # active | inactive
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    organization_id: Mapped[str] = mapped_column(ForeignKey("peer_organization.id"), index=True)


class Episode(Base):
    """One pass of a client through the program: from admission (on ward) into the community."""

    __tablename__ = "episode"
    __table_args__ = (
        UniqueConstraint("client_id", "ehr_encounter_id", name="uq_episode_encounter"),
        Index("ix_episode_peer", "peer_id"),
        Index("ix_episode_previous", "previous_episode_id"),  # is an episode followed by a readmission?
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_id: Mapped[str] = mapped_column(ForeignKey("client.id"), index=True)
    ehr_encounter_id: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))  # on-ward | in-community
    admitted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    discharged_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    discharge_disposition: Mapped[str | None] = mapped_column(String(64))
    encounter_json: Mapped[str] = mapped_column(Text)
    peer_id: Mapped[str | None] = mapped_column(ForeignKey("peer_supporter.id"))
    assigned_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # Intake (issue 4): a readmission flag, the stay's expected discharge, and the time of the kept snapshot.
    readmission: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    previous_episode_id: Mapped[str | None] = mapped_column(String(64))
    expected_discharge_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    snapshot_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class ProcessedMessage(Base):
    """A notification Bundle already handled, with the answer it got (replays get the same one)."""

    __tablename__ = "processed_message"

    site: Mapped[str] = mapped_column(String(64), primary_key=True)
    bundle_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    event: Mapped[str] = mapped_column(String(64))
    response_status: Mapped[int] = mapped_column(Integer)
    response_body: Mapped[str] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ConsentDocument(Base):
    """A client's Consent as recorded (R4 JSON); version_id grows on every change.

    Consent ids are each site's own: the key is "<site>|<Consent.id>" (a FHIR id never holds "|"), so two
    hospitals may use the same id and neither can learn of, or block, the other's. `identifier` is the first
    Consent.identifier as system|value; searches and If-None-Exist read every one from ConsentIdentifier."""

    __tablename__ = "consent"
    __table_args__ = (
        Index("ix_consent_identifier", "identifier"),
        Index("ix_consent_client_updated", "client_id", "updated_at", "id"),
    )

    id: Mapped[str] = mapped_column(String(130), primary_key=True)
    client_id: Mapped[str] = mapped_column(ForeignKey("client.id"), index=True)
    status: Mapped[str] = mapped_column(String(32))
    version_id: Mapped[int] = mapped_column(Integer)
    resource_json: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    identifier: Mapped[str | None] = mapped_column(String(300))
    # Optimistic locking: every UPDATE says `WHERE version_id = <the version read>`, so of two writers that read
    # the same version only the first succeeds (SQLite takes no row lock for SELECT ... FOR UPDATE).
    __mapper_args__ = {"version_id_col": version_id, "version_id_generator": False}  # noqa: RUF012


class ConsentIdentifier(Base):
    """Each identifier of a Consent's current version, for the `identifier` token search and If-None-Exist: a
    value alone matches it whatever its system, `system|` any value in the system, `|value` one with no system."""

    __tablename__ = "consent_identifier"
    __table_args__ = (Index("ix_consent_identifier_value", "value", "system"),)

    consent_id: Mapped[str] = mapped_column(ForeignKey("consent.id"), primary_key=True)
    system: Mapped[str] = mapped_column(String(300), primary_key=True)  # "" for an identifier without one
    value: Mapped[str] = mapped_column(String(300), primary_key=True)


class Contact(Base):
    """A peer contact with a client, as the peer recorded it; written back to the EHR as an Encounter."""

    __tablename__ = "contact"
    __table_args__ = (
        UniqueConstraint("peer_id", "app_identifier", name="uq_contact_app_identifier"),
        Index("ix_contact_peer_updated", "peer_id", "updated_at", "id"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    episode_id: Mapped[str] = mapped_column(ForeignKey("episode.id"), index=True)
    peer_id: Mapped[str] = mapped_column(ForeignKey("peer_supporter.id"))
    kind: Mapped[str] = mapped_column(String(32))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    minutes: Mapped[int] = mapped_column(Integer)
    app_identifier: Mapped[str | None] = mapped_column(String(300))
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # Issue 14: a peer may correct a contact or cancel it (entered-in-error); each change is a new version.
    status: Mapped[str] = mapped_column(String(32), server_default="finished")
    version_id: Mapped[int] = mapped_column(Integer, server_default="1")
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # Optimistic locking, as ConsentDocument's.
    __mapper_args__ = {"version_id_col": version_id, "version_id_generator": False}  # noqa: RUF012


class AuditRecord(Base):
    """One disclosure decision (permit or deny), with the FHIR AuditEvent that describes it."""

    __tablename__ = "audit_event"
    # (client, recorded, id): the order searches page in, so a page is read from the index, not sorted.
    __table_args__ = (Index("ix_audit_client_time_id", "client_id", "recorded_at", "id"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_id: Mapped[str] = mapped_column(String(64))
    actor: Mapped[str] = mapped_column(String(200))
    outcome: Mapped[str] = mapped_column(String(8))
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime())
    resource_json: Mapped[str] = mapped_column(Text)
