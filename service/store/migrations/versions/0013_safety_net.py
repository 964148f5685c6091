"""safety net: alerts with a state, supervision check-ins, each site's thresholds

alert: one row per (kind, subject, period), so a job run twice (or by two workers) never duplicates one.
supervision_check_in: a peer's supervision check-ins (date and outcome, no notes).
site_safety_net: a site's own thresholds (no row: the settings' defaults), and whether its EHR gets Flags.

Revision ID: 0013_safety_net
Revises: 0012_web
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013_safety_net"
down_revision: str | Sequence[str] | None = "0012_web"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "alert",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("subject", sa.String(length=64), nullable=False),
        sa.Column("period", sa.String(length=64), nullable=False),
        sa.Column("site", sa.String(length=64), nullable=True),
        sa.Column("organization", sa.String(length=64), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("detail_json", sa.Text(), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("acknowledged_by", sa.String(length=200), nullable=True),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolved_by", sa.String(length=200), nullable=True),
        sa.Column("resolution", sa.String(length=32), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("kind", "subject", "period", name="uq_alert_kind_subject_period"),
    )
    op.create_index("ix_alert_site_state", "alert", ["site", "state"], unique=False)
    op.create_index("ix_alert_organization_state", "alert", ["organization", "state"], unique=False)
    op.create_table(
        "supervision_check_in",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("peer_id", sa.String(length=64), nullable=False),
        sa.Column("organization", sa.String(length=64), nullable=False),
        sa.Column("held_on", sa.Date(), nullable=False),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.Column("recorded_by", sa.String(length=200), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_check_in_peer_date", "supervision_check_in", ["peer_id", "held_on"], unique=False)
    op.create_table(
        "site_safety_net",
        sa.Column("site", sa.String(length=64), nullable=False),
        sa.Column("no_contact_days", sa.Integer(), nullable=False),
        sa.Column("unassigned_days", sa.Integer(), nullable=False),
        sa.Column("weekly_minimum_minutes", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ehr_flags", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.PrimaryKeyConstraint("site"),
    )


def downgrade() -> None:
    op.drop_table("site_safety_net")
    op.drop_index("ix_check_in_peer_date", table_name="supervision_check_in")
    op.drop_table("supervision_check_in")
    op.drop_index("ix_alert_organization_state", table_name="alert")
    op.drop_index("ix_alert_site_state", table_name="alert")
    op.drop_table("alert")
