"""The peer app's read: a consented summary of one of the peer's own clients, audited every time."""

from __future__ import annotations

from typing import Any

from consent import DataCategory
from service.app.clock import utcnow
from service.app.sharing import Holdings, decide_over, disclosed_resources, disclosure_row
from service.errors import NotFound
from service.fhir import build
from service.store import audits, repository
from service.store.db import SessionFactory, engine_of


async def read_summary(sessions: SessionFactory, base_url: str, peer_id: str, client_id: str) -> dict[str, Any]:
    """A Bundle (collection) holding only what the client's consents permit this peer to see, item by item.

    A client who is not the peer's — or does not exist — is the same 404, so a peer learns nothing about
    clients who are not theirs. The disclosure (or the refusal) is audited, and the audit row committed, before
    the summary is returned; concurrent reads share that commit (service/store/audits.py).
    """
    now = utcnow()
    # One statement, outside any transaction: no writer's turn is held while reading.
    found = await repository.peer_summary_rows(engine_of(sessions), peer_id, client_id)
    if found is None:
        raise NotFound(f"Patient/{client_id} is not known")
    view, rows = found
    holdings = Holdings.of_view(view, rows)
    assert holdings.consents is not None  # read with the rows
    actor = f"Practitioner/{peer_id}"
    asked = [c for c in DataCategory if c in holdings.held_categories() | holdings.fetched_categories()]
    decision = decide_over(holdings.consents, holdings, actor, assigned=True, categories=asked, at=now)
    resources = disclosed_resources(decision, holdings)
    row = disclosure_row(view.client_id, actor, view.peer_name, decision, asked, now)
    await audits.append(sessions, row)
    return build.collection(resources, base_url, now)
