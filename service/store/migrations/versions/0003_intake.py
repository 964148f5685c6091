"""intake: subscription channels, their events, the intake inbox, notifications; readmission and expected
discharge on episodes

Revision ID: 0003_intake
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_intake"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = ("intake",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "subscription_channel",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("site", sa.String(length=64), nullable=False),
        sa.Column("subscription", sa.String(length=200), nullable=False),
        sa.Column("topic", sa.String(length=500), nullable=True),
        sa.Column("ehr_status", sa.String(length=32), nullable=True),
        sa.Column("form", sa.String(length=16), nullable=True),
        sa.Column("payload", sa.String(length=16), nullable=True),
        sa.Column("created_by_peerway", sa.Boolean(), nullable=False),
        sa.Column("heartbeat_seconds", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("handshake_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("events_since_start", sa.BigInteger(), nullable=True),
        sa.Column("highest_event", sa.BigInteger(), nullable=False),
        sa.Column("contiguous_through", sa.BigInteger(), nullable=False),
        sa.Column("last_event_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("search_cursor", sa.DateTime(timezone=True), nullable=True),
        sa.Column("silent_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_recovery_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_recovery_note", sa.String(length=300), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("site", "subscription", name="uq_channel_subscription"),
    )
    op.create_table(
        "channel_event",
        sa.Column("channel_id", sa.String(length=64), nullable=False),
        sa.Column("number", sa.BigInteger(), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("focus", sa.String(length=140), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["channel_id"], ["subscription_channel.id"]),
        sa.PrimaryKeyConstraint("channel_id", "number"),
    )
    op.create_table(
        "intake_inbox",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("site", sa.String(length=64), nullable=False),
        sa.Column("channel_id", sa.String(length=64), nullable=True),
        sa.Column("event_number", sa.BigInteger(), nullable=True),
        sa.Column("focus", sa.String(length=140), nullable=True),
        sa.Column("since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("available_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["channel_id"], ["subscription_channel.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_intake_inbox_due", "intake_inbox", ["status", "available_at"], unique=False)
    op.create_index("ix_intake_inbox_channel_id", "intake_inbox", ["channel_id"], unique=False)
    op.create_table(
        "notification",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("audience", sa.String(length=16), nullable=False),
        sa.Column("peer_id", sa.String(length=64), nullable=True),
        sa.Column("event", sa.String(length=32), nullable=False),
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("episode_id", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["client_id"], ["client.id"]),
        sa.ForeignKeyConstraint(["episode_id"], ["episode.id"]),
        sa.ForeignKeyConstraint(["peer_id"], ["peer_supporter.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_notification_feed", "notification", ["audience", "peer_id", "created_at"], unique=False)
    with op.batch_alter_table("episode", schema=None) as batch_op:
        batch_op.add_column(sa.Column("readmission", sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.add_column(sa.Column("previous_episode_id", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("expected_discharge_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("snapshot_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("episode", schema=None) as batch_op:
        batch_op.drop_column("snapshot_at")
        batch_op.drop_column("expected_discharge_at")
        batch_op.drop_column("previous_episode_id")
        batch_op.drop_column("readmission")
    op.drop_index("ix_notification_feed", table_name="notification")
    op.drop_table("notification")
    op.drop_index("ix_intake_inbox_channel_id", table_name="intake_inbox")
    op.drop_index("ix_intake_inbox_due", table_name="intake_inbox")
    op.drop_table("intake_inbox")
    op.drop_table("channel_event")
    op.drop_table("subscription_channel")
