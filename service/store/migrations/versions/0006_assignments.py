"""assignments: one history of who the client's peer is and was (careteam_member folds into assignment)

The CareTeam membership periods (careteam_member, since 0002) and the matching history (assignment, since 0004)
recorded the same periods twice. Nothing is lost: a membership period the assignment history lacks (peers
assigned before 0004, or history kept only for the CareTeam) becomes an assignment row with its start and end;
an episode whose peer has no open assignment gets one from its assigned_at. Then careteam_member goes.
Migrations are linear from here on.

Revision ID: 0006_assignments
Revises: 0005_sites
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_assignments"
down_revision: str | Sequence[str] | None = "0005_sites"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The membership periods the assignment history does not hold yet (same episode, peer and start).
_MISSING_PERIODS = """
INSERT INTO assignment (episode_id, peer_id, started_at, suggested, score, ended_at, end_kind)
SELECT m.episode_id, m.peer_id, m.started_at, :no, NULL, m.ended_at,
       CASE WHEN m.ended_at IS NULL THEN NULL ELSE 'replaced' END
FROM careteam_member m
WHERE NOT EXISTS (
    SELECT 1 FROM assignment a
    WHERE a.episode_id = m.episode_id AND a.peer_id = m.peer_id AND a.started_at = m.started_at
)
"""
# Episodes whose peer has no open period at all (assigned before any history was kept).
_MISSING_OPEN = """
INSERT INTO assignment (episode_id, peer_id, started_at, suggested, score, ended_at, end_kind)
SELECT e.id, e.peer_id, COALESCE(e.assigned_at, e.created_at), :no, NULL, NULL, NULL
FROM episode e
WHERE e.peer_id IS NOT NULL AND NOT EXISTS (
    SELECT 1 FROM assignment a WHERE a.episode_id = e.id AND a.ended_at IS NULL
)
"""


def upgrade() -> None:
    bind = op.get_bind()
    bind.execute(sa.text(_MISSING_PERIODS), {"no": False})
    bind.execute(sa.text(_MISSING_OPEN), {"no": False})
    with op.batch_alter_table("careteam_member", schema=None) as batch_op:
        batch_op.drop_index("ix_careteam_member_episode")
    op.drop_table("careteam_member")


def downgrade() -> None:
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
    op.get_bind().execute(
        sa.text(
            "INSERT INTO careteam_member (episode_id, peer_id, started_at, ended_at)"
            " SELECT episode_id, peer_id, started_at, ended_at FROM assignment ORDER BY started_at, id"
        )
    )
