"""How long a year's outcomes report and one safety-net run take on PostgreSQL, over a generated year.

    .venv/bin/python -m bench.outcomes_bench [--clients 320 3000]

Starts a throwaway PostgreSQL 15 (as the test suite does), migrates it, writes the year of
tests/support/seed_year.py at each size (two sites; readmissions add about a tenth more stays), then times:
the report behind Measure/$evaluate-measure (every site, the whole year: read, compute, audit row) and a
safety-net run in the middle of the year (read of the open episodes, rules, reconcile). Medians of 5 runs.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from datetime import timedelta

import asyncpg
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from service.app.alerts import run_safety_net
from service.app.outcomes import compute
from service.domain.outcomes import Period
from service.settings import Settings
from service.store.db import create_engine, session_factory, transaction
from service.store.migrate import upgrade
from service.store.models import Contact, Episode
from tests.support.postgres import throwaway_postgres
from tests.support.seed_year import YEAR_START, seed_year


async def _create(server: str, name: str) -> str:
    conn = await asyncpg.connect(make_url(server).set(drivername="postgresql").render_as_string(False))
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    return make_url(server).set(database=name).render_as_string(hide_password=False)


async def _measure(url: str, clients: int) -> str:
    settings = Settings(env="test", database_url=url, jwt_secret="x" * 40, _env_file=None)
    engine = create_engine(url)
    sessions = session_factory(engine)
    async with transaction(sessions) as session:
        await seed_year(session, clients=clients)
    async with sessions() as session:
        stays = await session.scalar(select(func.count()).select_from(Episode))
        contacts = await session.scalar(select(func.count()).select_from(Contact))
    period = Period(YEAR_START, YEAR_START + timedelta(days=365))
    report, safety = [], []
    for _ in range(5):
        started = time.perf_counter()
        await compute(sessions, settings, period, site=None, actor="bench", measure_ids=["discharged-into-program"])
        report.append(time.perf_counter() - started)
        started = time.perf_counter()
        await run_safety_net(sessions, settings, YEAR_START + timedelta(days=180))
        safety.append(time.perf_counter() - started)
    await engine.dispose()
    return (
        f"{clients:>5} clients, {stays} stays, {contacts} contacts: year's report {statistics.median(report):.3f} s,"
        f" one safety-net run {statistics.median(safety):.3f} s (medians of 5)"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, nargs="+", default=[320, 3000])
    args = parser.parse_args()
    with throwaway_postgres() as server:
        for clients in args.clients:
            url = asyncio.run(_create(server, f"bench_{clients}"))
            upgrade(url)
            print(asyncio.run(_measure(url, clients)))


if __name__ == "__main__":
    main()
