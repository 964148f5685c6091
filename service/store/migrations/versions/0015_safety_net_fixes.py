"""safety net fixes after an outside review

alert.ehr_flag: a Flag was written (queued) for this alert, so its close is written too, even if the site has
turned Flags off meanwhile (otherwise the EHR's Flag would stay active forever).
peer_pause: since when the safety net has seen each paused peer paused; a cover-needed alert is keyed on it, so
a second pause is a new occurrence and raises its alerts again.

Revision ID: 0015_safety_net_fixes
Revises: 0014_scale
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015_safety_net_fixes"
down_revision: str | Sequence[str] | None = "0014_scale"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("alert") as batch:
        batch.add_column(sa.Column("ehr_flag", sa.Boolean(), server_default=sa.false(), nullable=False))
    # Alerts open now at a site that asks for Flags had theirs written: their close must be written too.
    op.execute(
        "UPDATE alert SET ehr_flag = true WHERE state <> 'resolved' AND kind IN ('no-contact', 'unassigned')"
        " AND site IN (SELECT site FROM site_safety_net WHERE ehr_flags = true)"
    )
    op.create_table(
        "peer_pause",
        sa.Column("peer_id", sa.String(length=64), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("peer_id"),
    )


def downgrade() -> None:
    op.drop_table("peer_pause")
    with op.batch_alter_table("alert") as batch:
        batch.drop_column("ehr_flag")
