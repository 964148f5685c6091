"""jobs: one table for all deferred work — intake_inbox folds into outbox

The outbox (writes to the EHR) gains what intake work needs (channel, event number, focus, search start) and a
subject wide enough for a focus reference; every intake_inbox row moves into it with its kind, site, status,
attempts, availability, lease and error, in its order, and intake_inbox goes. An intake row's subject is what
it reads (its focus), or its channel for a search or recovery (as service/app/subscriptions.py queues them); one
that failed before keeps its creation time as the start of its retry horizon. The table keeps its name: see
service/store/jobs.py. Downgrading moves the intake rows back (new ids, as on the way up).

Revision ID: 0008_jobs
Revises: 0007_identity
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_jobs"
down_revision: str | Sequence[str] | None = "0007_identity"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INTAKE_KINDS = "('fetch', 'patient', 'search', 'recover')"
SHARED = "kind, site, status, attempts, available_at, claimed_until, last_error, created_at, done_at"
INTAKE = "channel_id, event_number, focus, since"


def upgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.alter_column("subject_id", existing_type=sa.String(length=64), type_=sa.String(length=140))
        batch.add_column(sa.Column("channel_id", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("event_number", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("focus", sa.String(length=140), nullable=True))
        batch.add_column(sa.Column("since", sa.DateTime(timezone=True), nullable=True))
        batch.create_foreign_key("fk_outbox_channel", "subscription_channel", ["channel_id"], ["id"])
        batch.create_index("ix_outbox_channel_id", ["channel_id"], unique=False)

    op.execute(
        f"INSERT INTO outbox ({SHARED}, {INTAKE}, subject_id, first_failed_at)"  # noqa: S608 - constants only
        f" SELECT {SHARED}, {INTAKE},"
        " CASE WHEN kind IN ('fetch', 'patient') THEN COALESCE(focus, channel_id, site)"
        " ELSE COALESCE(channel_id, site) END,"
        " CASE WHEN attempts > 0 AND status = 'pending' THEN created_at END"
        " FROM intake_inbox ORDER BY id"
    )

    with op.batch_alter_table("intake_inbox") as batch:
        batch.drop_index("ix_intake_inbox_channel_id")
        batch.drop_index("ix_intake_inbox_due")
    op.drop_table("intake_inbox")


def downgrade() -> None:
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
    shared = SHARED.replace("site", "COALESCE(site, '')")
    op.execute(
        f"INSERT INTO intake_inbox ({SHARED}, {INTAKE})"  # noqa: S608 - constants only
        f" SELECT {shared}, {INTAKE} FROM outbox WHERE kind IN {INTAKE_KINDS} ORDER BY id"
    )
    op.execute(f"DELETE FROM outbox WHERE kind IN {INTAKE_KINDS}")  # noqa: S608 - constants only

    with op.batch_alter_table("outbox") as batch:
        batch.drop_index("ix_outbox_channel_id")
        batch.drop_constraint("fk_outbox_channel", type_="foreignkey")
        batch.drop_column("since")
        batch.drop_column("focus")
        batch.drop_column("event_number")
        batch.drop_column("channel_id")
        batch.alter_column("subject_id", existing_type=sa.String(length=140), type_=sa.String(length=64))
