"""matching: peer profiles, client preferences, assignment history, episode endings

Revision ID: 0004_matching
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_matching"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = ("matching",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "peer_profile",
        sa.Column("peer_id", sa.String(length=64), nullable=False),
        sa.Column("practitioner_json", sa.Text(), nullable=False),
        sa.Column("role_json", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["peer_id"], ["peer_supporter.id"]),
        sa.PrimaryKeyConstraint("peer_id"),
    )
    op.create_table(
        "client_preference",
        sa.Column("episode_id", sa.String(length=64), nullable=False),
        sa.Column("preference_json", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["episode_id"], ["episode.id"]),
        sa.PrimaryKeyConstraint("episode_id"),
    )
    op.create_table(
        "assignment",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("episode_id", sa.String(length=64), nullable=False),
        sa.Column("peer_id", sa.String(length=64), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("suggested", sa.Boolean(), nullable=False),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("end_kind", sa.String(length=32), nullable=True),
        sa.Column("end_reason", sa.String(length=32), nullable=True),
        sa.Column("requested_by", sa.String(length=16), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["episode_id"], ["episode.id"]),
        sa.ForeignKeyConstraint(["peer_id"], ["peer_supporter.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_assignment_episode", "assignment", ["episode_id", "started_at"], unique=False)
    op.create_table(
        "episode_closure",
        sa.Column("episode_id", sa.String(length=64), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["episode_id"], ["episode.id"]),
        sa.PrimaryKeyConstraint("episode_id"),
    )


def downgrade() -> None:
    op.drop_table("episode_closure")
    op.drop_index("ix_assignment_episode", table_name="assignment")
    op.drop_table("assignment")
    op.drop_table("client_preference")
    op.drop_table("peer_profile")
