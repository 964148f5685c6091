"""The peer app's read: a consented summary of one of the peer's own clients, audited every time."""

from __future__ import annotations

from typing import Any

from consent import DataCategory
from service.app.clock import utcnow
from service.app.sharing import Holdings, decide, disclosed_resources, record_disclosure
from service.errors import NotFound
from service.fhir import build
from service.store import repository
from service.store.db import SessionFactory, transaction
from service.store.models import Client, PeerSupporter


async def read_summary(sessions: SessionFactory, base_url: str, peer_id: str, client_id: str) -> dict[str, Any]:
    """A Bundle (collection) holding only what the client's consents permit this peer to see, item by item.

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
        holdings = await Holdings.load(session, client, episode)
        actor = f"Practitioner/{peer_id}"
        asked = [c for c in DataCategory if c in holdings.held_categories() | holdings.fetched_categories()]
        decision = await decide(session, holdings, actor, assigned=True, categories=asked, at=now)
        resources = disclosed_resources(decision, holdings)
        record_disclosure(session, client.id, actor, peer.name, decision, asked, now)
    return build.collection(resources, base_url, now)
