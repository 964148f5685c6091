"""The peer app's read: a consented summary of one of the peer's own clients, audited every time."""

from __future__ import annotations

from typing import Any

from consent.categories import PURPOSE_COC
from service.app.clock import new_id, utcnow
from service.app.sharing import HELD, Holdings, decide, disclosed_resources
from service.errors import NotFound
from service.fhir import build
from service.store import repository
from service.store.db import SessionFactory, transaction
from service.store.models import AuditRecord, Client, PeerSupporter


async def read_summary(sessions: SessionFactory, base_url: str, peer_id: str, client_id: str) -> dict[str, Any]:
    """A Bundle (collection) holding only what the client's consents permit this peer to see.

    A client who is not the peer's — or does not exist — is the same 404, so a peer learns nothing about
    clients who are not theirs. The disclosure (or the refusal) is audited in the same transaction.
    """
    now = utcnow()
    async with transaction(sessions) as session:
        episode = await repository.episode_of_peer(session, peer_id, client_id)
        peer = await session.get(PeerSupporter, peer_id)
        client = await session.get(Client, client_id) if episode is not None else None
        if episode is None or client is None or peer is None:
            raise NotFound(f"Patient/{client_id} is not known")
        holdings = Holdings.of(client, episode)
        actor = f"Practitioner/{peer_id}"
        decision = await decide(session, holdings, actor, assigned=True, categories=HELD, at=now)
        resources = disclosed_resources(decision, holdings)
        disclosed = decision.permitted_categories()
        audit = build.disclosure_audit_event(
            build.Disclosure(
                audit_id=new_id(),
                client_id=client.id,
                actor_reference=actor,
                actor_name=peer.name,
                purpose=PURPOSE_COC.code,
                disclosed=disclosed,
                withheld=frozenset(HELD) - disclosed,
                consent_ids=frozenset(d.consent_id for d in decision.items if d.permitted and d.consent_id is not None),
                recorded_at=now,
            )
        )
        session.add(
            AuditRecord(
                id=audit["id"],
                client_id=client.id,
                actor=actor,
                outcome=audit["outcome"],
                recorded_at=now,
                resource_json=build.to_json(audit),
            )
        )
    return build.collection(resources, base_url, now)
