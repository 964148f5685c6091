"""How a paged FHIR search costs as the list grows: the first page, a page deep in the list reached by its
cursor, and _total=accurate, over one client's AuditEvents on a fresh SQLite database.

    .venv/bin/python bench/search_bench.py [--rows 20000] [--runs 50]

Keyset paging reads the page after its cursor through the (client, recorded) index, so a deep page should cost
about what the first does; only counting every match grows with the list.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import summarise
from service.app.audit import search_disclosures
from service.fhir.search import parse_search
from service.store.db import create_engine, session_factory
from service.store.migrate import upgrade
from service.store.models import AuditRecord, Client

SITE = "default"


async def seed(url: str, rows: int) -> None:
    engine = create_engine(url)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    async with session_factory(engine)() as session:
        session.add(
            Client(id="c1", site=SITE, ehr_patient_id="p1", patient_json="{}", created_at=start, updated_at=start)
        )
        event = json.dumps({"resourceType": "AuditEvent", "recorded": "2026-01-01T00:00:00Z"})
        for i in range(rows):
            at = start + timedelta(seconds=i)
            session.add(
                AuditRecord(id=f"a{i:07d}", client_id="c1", actor="x", outcome="0", recorded_at=at, resource_json=event)
            )
        await session.commit()
    await engine.dispose()


async def measure(url: str, rows: int, runs: int) -> None:
    engine = create_engine(url)
    sessions = session_factory(engine)
    first = parse_search("AuditEvent", [("patient", "Patient/c1")], lenient=False)
    found = await search_disclosures(sessions, SITE, first)
    cursor = found.next
    for _ in range(rows // 2 // first.count):  # walk to the middle of the list by cursors
        assert cursor is not None
        found = await search_disclosures(
            sessions,
            SITE,
            parse_search("AuditEvent", [("patient", "Patient/c1"), ("_page", cursor.token())], lenient=False),
        )
        cursor = found.next
    assert cursor is not None
    deep = parse_search("AuditEvent", [("patient", "Patient/c1"), ("_page", cursor.token())], lenient=False)
    counted = parse_search("AuditEvent", [("patient", "Patient/c1"), ("_total", "accurate")], lenient=False)
    for name, search in (("first page (20)", first), (f"page at row {rows // 2}", deep), ("_total=accurate", counted)):
        samples = []
        for _ in range(runs):
            started = time.perf_counter_ns()
            await search_disclosures(sessions, SITE, search)
            samples.append(time.perf_counter_ns() - started)
        print(summarise(f"{name}, {rows} AuditEvents", samples))
    await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
        upgrade(url)
        asyncio.run(seed(url, args.rows))
        asyncio.run(measure(url, args.rows, args.runs))


if __name__ == "__main__":
    main()
