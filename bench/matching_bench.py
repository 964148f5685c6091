"""Suggestions for one episode among 2,000 peers: the pure ranking and the whole use case on SQLite.

Baselines from the same run: a pass over the same 2,000 candidates that only sorts them by id, and a bare
query that loads the 2,000 stored profiles. Target (issue 6): the suggestion under 50 ms.

Run: .venv/bin/python bench/matching_bench.py [iterations]
"""

from __future__ import annotations

import asyncio
import random
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from sqlalchemy import select

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import summarise
from service.app import matching as use
from service.app import profiles
from service.app.clock import utcnow
from service.domain.matching import Candidate, ClientPreferences, PeerProfile, rank
from service.domain.vocabulary import SupportKind
from service.store.db import create_engine, session_factory, transaction
from service.store.matching import PeerProfileRecord
from service.store.migrate import upgrade
from service.store.models import Client, Episode, PeerSupporter
from service.store.sites import PeerSite

PEERS = 2000
INTERESTS = ["tennis", "old movies", "chess", "hiking", "music", "cooking", "gardening", "soccer", "art", "reading"]
LANGUAGES = ["en", "fr", "pt", "es", "pa", "zh", "ar"]
NEIGHBOURHOODS = [f"Neighbourhood {i}" for i in range(30)]


def peer(i: int, rng: random.Random) -> PeerProfile:
    return PeerProfile(
        peer_id=f"peer-{i:05}",
        name=f"Peer {i}",
        gender=rng.choice(["female", "male", "other"]),
        age_band=rng.choice(["18-24", "25-34", "35-44", "45-54", "55-64", "65-plus"]),
        languages=frozenset(rng.sample(LANGUAGES, rng.randint(1, 3))),
        interests=tuple(rng.sample(INTERESTS, rng.randint(1, 4))),
        neighbourhood=rng.choice(NEIGHBOURHOODS),
        caseload_cap=rng.randint(2, 8),
        support_kinds=frozenset(rng.sample(list(SupportKind), 2)),
        client_min_age=rng.choice([None, 18, 25]),
        client_max_age=rng.choice([None, 50, 65]),
    )


CLIENT = ClientPreferences(
    client_id="client",
    peer_genders=frozenset({"female"}),
    languages=frozenset({"pt"}),
    interests=("tennis", "old movies"),
    own_age_band="25-34",
    neighbourhood="Neighbourhood 3",
)


def timed(n: int, fn: Callable[[], object]) -> list[int]:
    samples = []
    for _ in range(n):
        start = time.perf_counter_ns()
        fn()
        samples.append(time.perf_counter_ns() - start)
    return samples


async def timed_async(n: int, fn: Callable[[], Awaitable[object]]) -> list[int]:
    samples = []
    for _ in range(n):
        start = time.perf_counter_ns()
        await fn()
        samples.append(time.perf_counter_ns() - start)
    return samples


async def whole_use_case(n: int, directory: str, peers: list[PeerProfile]) -> tuple[list[int], list[int]]:
    engine = create_engine(f"sqlite+aiosqlite:///{directory}/bench.db")
    sessions = session_factory(engine)
    now = utcnow()
    async with transaction(sessions) as session:
        session.add(
            Client(id="client", site="default", ehr_patient_id="p", patient_json="{}", created_at=now, updated_at=now)
        )
        session.add(
            Episode(
                id="episode",
                client_id="client",
                ehr_encounter_id="e",
                state="in-community",
                admitted_at=now,
                discharged_at=now,
                discharge_disposition=None,
                encounter_json="{}",
                peer_id=None,
                assigned_at=None,
                created_at=now,
                updated_at=now,
            )
        )
        for p in peers:
            session.add(
                PeerSupporter(id=p.peer_id, name=p.name, status="active", created_at=now, organization_id="default")
            )
        await session.flush()
        for p in peers:  # every peer is enabled at the client's site: suggestions consider them all
            session.add(PeerSite(peer_id=p.peer_id, site_id="default", enabled_at=now))
        for p in peers:
            profiles.store_profile(session, p, now, None)
    await use.set_preferences(sessions, "default", "episode", CLIENT)
    await use.suggest(sessions, "default", "episode")  # the first call reads every profile once into the cache

    async def load_only() -> None:
        async with sessions() as session:
            (await session.execute(select(PeerProfileRecord))).scalars().all()

    baseline = await timed_async(n, load_only)
    measured = await timed_async(n, lambda: use.suggest(sessions, "default", "episode"))
    await engine.dispose()
    return baseline, measured


def main(n: int) -> None:
    rng = random.Random(7)
    peers = [peer(i, rng) for i in range(PEERS)]
    candidates = [Candidate(p, rng.randint(0, 3)) for p in peers]
    sort_only = timed(n, lambda: sorted(candidates, key=lambda c: c.profile.peer_id))
    ranking = timed(n, lambda: rank(CLIENT, candidates, on_ward=False))
    with tempfile.TemporaryDirectory() as directory:
        upgrade(f"sqlite+aiosqlite:///{directory}/bench.db")
        load_only, suggest = asyncio.run(whole_use_case(n, directory, peers))
    print(f"{PEERS} peers")
    print(summarise("baseline: sort the candidates by id", sort_only))
    print(summarise("rank (hard rules, scores, reasons, order)", ranking))
    print(summarise("baseline: load the stored profiles (SQLite)", load_only))
    print(summarise("suggest use case (load, caseloads, rank)", suggest))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 50)
