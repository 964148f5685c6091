"""scale: which peer's Practitioner was written to which site's EHR lately, shared by every worker process

Before, each `peerway worker` process remembered this in memory only, so N workers each wrote every peer's
Practitioner again.

Revision ID: 0014_scale
Revises: 0013_safety_net
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014_scale"
down_revision: str | Sequence[str] | None = "0013_safety_net"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "written_practitioner",
        sa.Column("site", sa.String(length=64), nullable=False),
        sa.Column("peer_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("reference", sa.String(length=300), nullable=False),
        sa.Column("written_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("site", "peer_id"),
    )


def downgrade() -> None:
    op.drop_table("written_practitioner")
