"""every identifier of a Consent, for FHIR token search

A Consent was found by its first identifier only, and only as system|value: `identifier=k1` (any system),
`identifier=urn:x|` (any value in a system) and a Consent's second identifier found nothing, so a conditional
create (If-None-Exist) naming the second identifier stored a duplicate. `consent_identifier` holds each
identifier of each Consent's current version; this migration fills it from the stored Consents.

Revision ID: 0020_consent_identifiers
Revises: 0019_closure_ended_index
Create Date: 2026-12-02
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020_consent_identifiers"
down_revision: str | Sequence[str] | None = "0019_closure_ended_index"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BATCH = 1000


def upgrade() -> None:
    table = op.create_table(
        "consent_identifier",
        sa.Column("consent_id", sa.String(130), sa.ForeignKey("consent.id"), primary_key=True),
        sa.Column("system", sa.String(300), primary_key=True),
        sa.Column("value", sa.String(300), primary_key=True),
    )
    op.create_index("ix_consent_identifier_value", "consent_identifier", ["value", "system"])
    bind = op.get_bind()
    after = ""
    while True:
        rows = bind.execute(
            sa.text("SELECT id, resource_json FROM consent WHERE id > :after ORDER BY id LIMIT :n"),
            {"after": after, "n": BATCH},
        ).all()
        if not rows:
            break
        found = {(key, *pair) for key, text in rows for pair in _identifiers(text)}
        if found:
            op.bulk_insert(table, [{"consent_id": k, "system": s, "value": v} for k, s, v in sorted(found)])
        after = rows[-1][0]


def _identifiers(text: str) -> list[tuple[str, str]]:
    """(system or "", value) of each identifier with a value, as the service stores them (service/app/consents)."""
    data = json.loads(text)
    found = data.get("identifier")
    items = found if isinstance(found, list) else [found]
    return [
        (item["system"] if isinstance(item.get("system"), str) else "", item["value"])
        for item in items
        if isinstance(item, dict)
        and isinstance(item.get("value"), str)
        and item["value"]
        and len(item["value"]) <= 300
        and len(item.get("system") or "") <= 300
    ]


def downgrade() -> None:
    op.drop_index("ix_consent_identifier_value", table_name="consent_identifier")
    op.drop_table("consent_identifier")
