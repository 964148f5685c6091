"""background: a client's background read from the hospital EHR, and per category how the last read went

background_item: appointments, goals, safety flags, community supports (and diagnosis or notes when a permit
names them), each reduced to what a peer may need, with the EHR's security labels and the source's reference.
background_fetch: per client and category, the last attempt, the last success, the item count and the error.

Revision ID: 0011_background
Revises: 0010_hl7v2
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011_background"
down_revision: str | Sequence[str] | None = "0010_hl7v2"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "background_item",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("category", sa.String(length=32), nullable=False),
        sa.Column("source", sa.String(length=140), nullable=False),
        sa.Column("resource_json", sa.Text(), nullable=False),
        sa.Column("labels_json", sa.Text(), nullable=False),
        sa.Column("data_date", sa.DateTime(timezone=True), nullable=True),
        sa.Column("fetched_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["client_id"], ["client.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_background_item_client_category", "background_item", ["client_id", "category"], unique=False)
    op.create_table(
        "background_fetch",
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("category", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("succeeded_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("items", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["client_id"], ["client.id"]),
        sa.PrimaryKeyConstraint("client_id", "category"),
    )


def downgrade() -> None:
    op.drop_table("background_fetch")
    op.drop_index("ix_background_item_client_category", table_name="background_item")
    op.drop_table("background_item")
