"""jobs wake workers at once on PostgreSQL

A trigger on the job table (`outbox`) notifies the channel `peerway_jobs` with the job's kind whenever a row
becomes claimable now: a job queued, a job given back (a worker stopping), a dead letter replayed. PostgreSQL
delivers the notification when the writing transaction commits, to every worker listening
(service/workers/jobs.py), which then claims at once instead of at its next poll. The poll stays the guarantee;
the notification only shortens the wait. Nothing on SQLite, which has no way to tell another process.

The cost: PostgreSQL commits notifying transactions one at a time (a lock held from the notification's queueing
until the commit is flushed), so transactions that queue jobs no longer share a WAL flush with each other. At a
hospital's event and contact rates (a few a second) that is nothing; it is why only rows claimable now notify
(a retry scheduled for later, a job held back, a claim, a lease renewal and "done" do not).

Revision ID: 0017_job_signals
Revises: 0016_background_fixes
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0017_job_signals"
down_revision: str | Sequence[str] | None = "0016_background_fixes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        """
        CREATE FUNCTION peerway_job_claimable() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('peerway_jobs', NEW.kind);
            RETURN NULL;
        END
        $$
        """
    )
    # Row by row, only for rows a worker could claim now: one notification per kind and transaction reaches the
    # listeners (PostgreSQL folds identical ones). "Now" has 5 s of slack for the application's clock running
    # ahead of the database's (a job the application wrote as due now is then still announced).
    op.execute(
        """
        CREATE TRIGGER outbox_claimable AFTER INSERT OR UPDATE ON outbox FOR EACH ROW
        WHEN (
            NEW.status = 'pending' AND NEW.claimed_until IS NULL
            AND NEW.available_at <= clock_timestamp() + interval '5 seconds'
        )
        EXECUTE FUNCTION peerway_job_claimable()
        """
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER IF EXISTS outbox_claimable ON outbox")
    op.execute("DROP FUNCTION IF EXISTS peerway_job_claimable()")
