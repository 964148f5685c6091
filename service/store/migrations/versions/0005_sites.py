"""sites: hospitals with their own EHR connection, peer organizations, peers per site, clients' identifiers

Merges the capability branches. Nothing is lost: every site name already in use (clients, processed messages,
subscription channels) becomes a site row whose connection is the PEERWAY_EHR_* settings, as before; existing
peer supporters join the "default" organization and stay enabled for every existing site (they served all of
them until now).

Revision ID: 0005_sites
Revises: 0002_delivery, 0003_intake, 0004_matching
Create Date: 2026-11-26
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0005_sites"
down_revision: str | Sequence[str] | None = ("0002_delivery", "0003_intake", "0004_matching")
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "site",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("fhir_base_url", sa.Text(), nullable=True),
        sa.Column("fhir_version", sa.String(length=16), nullable=False),
        sa.Column("write_mode", sa.String(length=32), nullable=False),
        sa.Column("token_url", sa.Text(), nullable=True),
        sa.Column("client_id", sa.String(length=200), nullable=True),
        sa.Column("private_key_path", sa.Text(), nullable=True),
        sa.Column("key_id", sa.String(length=200), nullable=True),
        sa.Column("scope", sa.Text(), nullable=True),
        sa.Column("bearer_token_path", sa.Text(), nullable=True),
        sa.Column("channel_secret_sha256", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("channel_secret_sha256"),
    )
    op.create_table(
        "peer_organization",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "peer_site",
        sa.Column("peer_id", sa.String(length=64), nullable=False),
        sa.Column("site_id", sa.String(length=64), nullable=False),
        sa.Column("enabled_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["peer_id"], ["peer_supporter.id"]),
        sa.ForeignKeyConstraint(["site_id"], ["site.id"]),
        sa.PrimaryKeyConstraint("peer_id", "site_id"),
    )

    bind = op.get_bind()
    now = datetime.now(UTC)
    in_use = {"default"}
    for table in ("client", "processed_message", "subscription_channel"):
        in_use |= {row[0] for row in bind.execute(sa.text(f"SELECT DISTINCT site FROM {table}"))}  # noqa: S608
    site = sa.table(
        "site",
        sa.column("id", sa.String),
        sa.column("name", sa.String),
        sa.column("status", sa.String),
        sa.column("fhir_version", sa.String),
        sa.column("write_mode", sa.String),
        sa.column("created_at", sa.DateTime(timezone=True)),
        sa.column("updated_at", sa.DateTime(timezone=True)),
    )
    op.bulk_insert(
        site,
        [
            {
                "id": name,
                "name": name,
                "status": "active",
                "fhir_version": "4.0.1",
                "write_mode": "settings",
                "created_at": now,
                "updated_at": now,
            }
            for name in sorted(in_use)
        ],
    )
    organization = sa.table(
        "peer_organization",
        sa.column("id", sa.String),
        sa.column("name", sa.String),
        sa.column("created_at", sa.DateTime(timezone=True)),
    )
    op.bulk_insert(organization, [{"id": "default", "name": "Peer support program", "created_at": now}])

    with op.batch_alter_table("peer_supporter") as batch:
        batch.add_column(sa.Column("organization_id", sa.String(length=64), nullable=True))
    bind.execute(sa.text("UPDATE peer_supporter SET organization_id = 'default'"))
    with op.batch_alter_table("peer_supporter") as batch:
        batch.alter_column("organization_id", existing_type=sa.String(length=64), nullable=False)
        batch.create_foreign_key("fk_peer_supporter_organization", "peer_organization", ["organization_id"], ["id"])
        batch.create_index("ix_peer_supporter_organization_id", ["organization_id"])
    bind.execute(
        sa.text(
            "INSERT INTO peer_site (peer_id, site_id, enabled_at) SELECT p.id, s.id, :now FROM peer_supporter p, site s"
        ),
        {"now": now},
    )

    # Each outbox row carries the site of its subject's client (a contact's, or a CareTeam's episode's).
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("site", sa.String(length=64), nullable=True))
    bind.execute(
        sa.text(
            "UPDATE outbox SET site = CASE WHEN kind = 'contact' THEN"
            " (SELECT client.site FROM contact JOIN episode ON episode.id = contact.episode_id"
            " JOIN client ON client.id = episode.client_id WHERE contact.id = outbox.subject_id)"
            " ELSE (SELECT client.site FROM episode JOIN client ON client.id = episode.client_id"
            " WHERE episode.id = outbox.subject_id) END"
        )
    )

    # Consent ids become each site's own ("<site>|<Consent.id>").
    with op.batch_alter_table("consent") as batch:
        batch.alter_column("id", existing_type=sa.String(length=64), type_=sa.String(length=130))
    bind.execute(
        sa.text("UPDATE consent SET id = (SELECT site FROM client WHERE client.id = consent.client_id) || '|' || id")
    )

    op.create_table(
        "client_identifier",
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("system", sa.String(length=300), nullable=False),
        sa.Column("value_sha256", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(["client_id"], ["client.id"]),
        sa.PrimaryKeyConstraint("client_id", "system", "value_sha256"),
    )
    op.create_index("ix_client_identifier_value", "client_identifier", ["system", "value_sha256"])
    # Identifiers of the clients already known, from the Patient snapshots they were stored with.
    rows = bind.execute(sa.text("SELECT id, patient_json FROM client")).all()
    found = [
        {"client_id": client_id, "system": system, "value_sha256": digest}
        for client_id, patient_json in rows
        for system, digest in _identifier_digests(patient_json)
    ]
    if found:
        bind.execute(
            sa.text(
                "INSERT INTO client_identifier (client_id, system, value_sha256)"
                " VALUES (:client_id, :system, :value_sha256)"
            ),
            found,
        )


def _identifier_digests(patient_json: str) -> set[tuple[str, str]]:
    """The same digests service/app/linking.py records (kept here so the migration never changes with the code)."""
    try:
        patient = json.loads(patient_json)
    except ValueError:
        return set()
    found: set[tuple[str, str]] = set()
    for identifier in patient.get("identifier") or [] if isinstance(patient, dict) else []:
        if isinstance(identifier, dict):
            system, value = identifier.get("system"), identifier.get("value")
            if isinstance(system, str) and isinstance(value, str) and system and value.strip() and len(system) <= 300:
                found.add((system, hashlib.sha256(value.strip().encode()).hexdigest()))
    return found


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("site")
    bind = op.get_bind()
    for (key,) in bind.execute(sa.text("SELECT id FROM consent")).all():
        bind.execute(sa.text("UPDATE consent SET id = :id WHERE id = :key"), {"id": key.split("|", 1)[-1], "key": key})
    with op.batch_alter_table("consent") as batch:
        batch.alter_column("id", existing_type=sa.String(length=130), type_=sa.String(length=64))
    op.drop_index("ix_client_identifier_value", table_name="client_identifier")
    op.drop_table("client_identifier")
    with op.batch_alter_table("peer_supporter") as batch:
        batch.drop_index("ix_peer_supporter_organization_id")
        batch.drop_constraint("fk_peer_supporter_organization", type_="foreignkey")
        batch.drop_column("organization_id")
    op.drop_table("peer_site")
    op.drop_table("peer_organization")
    op.drop_table("site")
