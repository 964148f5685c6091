"""delivery: outbox claim tokens, retry horizon and the EHR's answer; CareTeam membership history

Revision ID: 0002_delivery
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_delivery"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = ("delivery",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("claimed_by", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("first_failed_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("last_attempt_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("last_status", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("outcome_json", sa.Text(), nullable=True))
        batch_op.create_index("ix_outbox_subject", ["kind", "subject_id"], unique=False)

    op.create_table(
        "careteam_member",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("episode_id", sa.String(length=64), nullable=False),
        sa.Column("peer_id", sa.String(length=64), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["episode_id"], ["episode.id"]),
        sa.ForeignKeyConstraint(["peer_id"], ["peer_supporter.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("careteam_member", schema=None) as batch_op:
        batch_op.create_index("ix_careteam_member_episode", ["episode_id", "started_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("careteam_member", schema=None) as batch_op:
        batch_op.drop_index("ix_careteam_member_episode")
    op.drop_table("careteam_member")

    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_subject")
        batch_op.drop_column("outcome_json")
        batch_op.drop_column("last_status")
        batch_op.drop_column("last_attempt_at")
        batch_op.drop_column("first_failed_at")
        batch_op.drop_column("claimed_by")
