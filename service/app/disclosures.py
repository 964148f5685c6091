"""Accounting of each disclosure as it happens: the AuditEvent row of one read of a client's data (what was
disclosed, what withheld, under which Consents), added to the read's own transaction or committed by the
summary read before it answers (service/store/audits.py)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from consent import DataCategory, Decision
from consent.categories import PURPOSE_COC
from service.app.clock import new_id
from service.app.sharing import permitted_references, shared_categories
from service.fhir import build
from service.fhir.audit_text import AuditEventText
from service.store.models import AuditRecord

# What a disclosure's text is first rendered with: every read replaces both (AuditEventText.render).
_ANY_ID = ""
_ANY_MOMENT = datetime(2000, 1, 1, tzinfo=UTC)


def record_disclosure(
    session: AsyncSession,
    client_id: str,
    actor_reference: str,
    actor_name: str,
    decision: Decision,
    requested: Iterable[DataCategory],
    at: datetime,
) -> None:
    """Audit one read of a client's data by a peer: what was disclosed, what withheld, under which Consents."""
    text = disclosure_text(client_id, actor_reference, actor_name, decision, requested)
    session.add(AuditRecord(**Disclosed(client_id, actor_reference, text).row(at)))


class Disclosed:
    """The audit rows of reads that disclose the same thing to the same actor: the AuditEvent rendered once, each
    row with an id of its own and its moment (a summary read keeps one with its decided summary)."""

    __slots__ = ("actor_reference", "client_id", "text")

    def __init__(self, client_id: str, actor_reference: str, text: AuditEventText) -> None:
        self.client_id = client_id
        self.actor_reference = actor_reference
        self.text = text

    def row(self, at: datetime) -> dict[str, Any]:
        """The row of one read at `at`, as AuditRecord's column values."""
        audit_id = new_id()
        return {
            "id": audit_id,
            "client_id": self.client_id,
            "actor": self.actor_reference,
            "outcome": self.text.outcome,
            "recorded_at": at,
            "resource_json": self.text.render(audit_id, at),
        }


def disclosure_text(
    client_id: str,
    actor_reference: str,
    actor_name: str,
    decision: Decision,
    requested: Iterable[DataCategory],
) -> AuditEventText:
    """The AuditEvent of a read, but for its id and moment."""
    disclosed = shared_categories(decision)
    event = build.disclosure_audit_event(
        build.Disclosure(
            audit_id=_ANY_ID,
            client_id=client_id,
            actor_reference=actor_reference,
            actor_name=actor_name,
            purpose=PURPOSE_COC.code,
            disclosed=disclosed,
            withheld=frozenset(requested) - disclosed,
            consent_ids=frozenset(d.consent_id for d in decision.items if d.permitted and d.consent_id is not None),
            recorded_at=_ANY_MOMENT,
            items=_item_decisions(decision),
        )
    )
    return AuditEventText.of(event)


def _item_decisions(decision: Decision) -> tuple[build.DisclosedItem, ...]:
    """Each background item asked for, disclosed or withheld (withheld when any decision about it withholds it)."""
    permitted = permitted_references(decision)
    seen: dict[str, build.DisclosedItem] = {}
    for d in decision.items:
        reference = d.item.reference
        if reference is None or "#" in reference or reference in seen:
            continue  # the category rows are audited as such; an element (street lines) is part of its resource
        labels = tuple(sorted((label.system, label.code) for label in d.item.security_labels))
        seen[reference] = build.DisclosedItem(reference, d.item.category, reference in permitted, labels)
    return tuple(seen.values())
