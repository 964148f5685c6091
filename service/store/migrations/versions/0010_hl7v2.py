"""hl7v2: HL7 v2 ADT feeds over MLLP and the messages they answered

hl7_feed: which site a listener port (or one sending facility on it) speaks for, with its health counters.
hl7_message: each message answered, keyed by site, sender (MSH-3^MSH-4) and MSH-10, so a replay gets the first
acknowledgement; A40 merges keep the two patient ids for the coordinator.

Revision ID: 0010_hl7v2
Revises: 0009_versions
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_hl7v2"
down_revision: str | Sequence[str] | None = "0009_versions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "hl7_feed",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("site", sa.String(length=64), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column("facility", sa.String(length=200), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_message_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("accepted", sa.Integer(), nullable=False),
        sa.Column("refused", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["site"], ["site.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("port", "facility", name="uq_hl7_feed_port_facility"),
    )
    op.create_table(
        "hl7_message",
        sa.Column("site", sa.String(length=64), nullable=False),
        sa.Column("sender", sa.String(length=400), nullable=False),
        sa.Column("control_id", sa.String(length=64), nullable=False),
        sa.Column("feed_id", sa.String(length=64), nullable=False),
        sa.Column("trigger", sa.String(length=8), nullable=False),
        sa.Column("ack_code", sa.String(length=2), nullable=False),
        sa.Column("ack_text", sa.Text(), nullable=False),
        sa.Column("error_location", sa.String(length=64), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("merged_patient_id", sa.String(length=200), nullable=True),
        sa.Column("surviving_patient_id", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(["feed_id"], ["hl7_feed.id"]),
        sa.PrimaryKeyConstraint("site", "sender", "control_id"),
    )
    op.create_index("ix_hl7_message_feed_id", "hl7_message", ["feed_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_hl7_message_feed_id", table_name="hl7_message")
    op.drop_table("hl7_message")
    op.drop_table("hl7_feed")
