"""indexes for look-ups that read more the longer the program runs

An outside review filled a database with some years of a large program (60,000 episodes, 56,000 of them closed;
600,000 done jobs) and timed the statements each path runs:

- `ix_episode_previous`: the safety net, the peer's weeks and the outcomes ask of each episode whether a later one
  followed it (a readmission: `later.previous_episode_id = episode.id`). Without an index that was a scan of
  the episode table for every episode, growing with its square: 4,000 rows took 44 s on SQLite.
- `ix_outbox_subject` becomes (kind, subject_id, status, id): a claim checks that no older job of the same kind
  and subject is pending. Search and recover jobs share their channel's id as subject, so the check walked every
  such job the channel had ever done: 360 ms a claim with 28,000 of them, against 0.16 ms now.

Revision ID: 0018_growth_indexes
Revises: 0017_job_signals
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0018_growth_indexes"
down_revision: str | Sequence[str] | None = "0017_job_signals"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_episode_previous", "episode", ["previous_episode_id"])
    op.create_index("ix_outbox_subject_pending", "outbox", ["kind", "subject_id", "status", "id"])
    op.drop_index("ix_outbox_subject", table_name="outbox")


def downgrade() -> None:
    op.create_index("ix_outbox_subject", "outbox", ["kind", "subject_id"])
    op.drop_index("ix_outbox_subject_pending", table_name="outbox")
    op.drop_index("ix_episode_previous", table_name="episode")
