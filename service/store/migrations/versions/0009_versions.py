"""versions: contacts carry a version, a last-updated time and a status; Consents their identifier

FHIR clients expect meta.versionId / meta.lastUpdated (ETag, If-Match, vread) on every resource served. A
contact (PeerContact Encounter) can now be updated by its peer and cancelled as entered-in-error, so it keeps a
status, a version and when it last changed (existing rows: version 1, changed when created, finished). A
Consent keeps its first identifier (system|value) so a create with If-None-Exist finds it without reading every
Consent's JSON. Search pages by (last updated, id), hence the indexes (the audit index gains the id, so a page
of AuditEvents is read in index order instead of sorting all of a client's).

Revision ID: 0009_versions
Revises: 0008_jobs
Create Date: 2026-12-01
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_versions"
down_revision: str | Sequence[str] | None = "0008_jobs"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("contact") as batch:
        batch.add_column(sa.Column("status", sa.String(length=32), nullable=False, server_default="finished"))
        batch.add_column(sa.Column("version_id", sa.Integer(), nullable=False, server_default="1"))
        batch.add_column(sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE contact SET updated_at = created_at")
    with op.batch_alter_table("contact") as batch:
        batch.alter_column("updated_at", existing_type=sa.DateTime(timezone=True), nullable=False)
        batch.create_index("ix_contact_peer_updated", ["peer_id", "updated_at", "id"], unique=False)
    with op.batch_alter_table("consent") as batch:
        batch.add_column(sa.Column("identifier", sa.String(length=300), nullable=True))
        batch.create_index("ix_consent_identifier", ["identifier"], unique=False)
        batch.create_index("ix_consent_client_updated", ["client_id", "updated_at", "id"], unique=False)
    _identify_recorded_consents()
    with op.batch_alter_table("audit_event") as batch:
        batch.drop_index("ix_audit_client_time")
        batch.create_index("ix_audit_client_time_id", ["client_id", "recorded_at", "id"], unique=False)


def _identify_recorded_consents() -> None:
    """Consents recorded before this revision get their identifier too, or If-None-Exist would miss them and an
    EHR's retry would record a second active copy (which a later withdrawal of the first would leave in force)."""
    connection = op.get_bind()
    consent = sa.table("consent", sa.column("id", sa.String), sa.column("resource_json", sa.Text),
                       sa.column("identifier", sa.String))  # fmt: skip
    for consent_id, resource_json in connection.execute(sa.select(consent.c.id, consent.c.resource_json)).all():
        identifiers = json.loads(resource_json).get("identifier")
        first = identifiers[0] if isinstance(identifiers, list) and identifiers else identifiers
        if isinstance(first, dict) and isinstance(first.get("system"), str) and isinstance(first.get("value"), str):
            key = f"{first['system']}|{first['value']}"
            if len(key) <= 300:
                connection.execute(sa.update(consent).where(consent.c.id == consent_id).values(identifier=key))


def downgrade() -> None:
    with op.batch_alter_table("audit_event") as batch:
        batch.drop_index("ix_audit_client_time_id")
        batch.create_index("ix_audit_client_time", ["client_id", "recorded_at"], unique=False)
    with op.batch_alter_table("consent") as batch:
        batch.drop_index("ix_consent_client_updated")
        batch.drop_index("ix_consent_identifier")
        batch.drop_column("identifier")
    with op.batch_alter_table("contact") as batch:
        batch.drop_index("ix_contact_peer_updated")
        batch.drop_column("updated_at")
        batch.drop_column("version_id")
        batch.drop_column("status")
