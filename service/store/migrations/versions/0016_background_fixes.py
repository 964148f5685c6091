"""background fixes after an outside privacy review

No schema change: the background read under the old rules is deleted, so that nothing kept before the review's
fixes is shown again. Items kept then may be of another type than their category (a Condition filed as a goal),
about another patient, carry whole sub-objects (coding extensions, free-text team names), or carry security labels
in a spelling the consent engine did not recognise (an OID-form SUD label read as no restriction). The client's
own answers (QuestionnaireResponse) stay. The worker's periodic check reads every client in the community again
under the new rules within a minute (a consented category that is not held is read as a first read).

Revision ID: 0016_background_fixes
Revises: 0015_safety_net_fixes
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0016_background_fixes"
down_revision: str | Sequence[str] | None = "0015_safety_net_fixes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("DELETE FROM background_item WHERE source NOT LIKE 'QuestionnaireResponse/%'")
    op.execute("DELETE FROM background_fetch")


def downgrade() -> None:
    pass  # what was deleted was unsafe to show; the next read fills the tables again either way
