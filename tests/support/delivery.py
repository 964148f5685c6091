"""Run the outbox worker once from a test, and look at the outbox as an operator would."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select

from service.app.sites import settings_ehr
from service.ehr.client import EhrClient
from service.settings import Settings
from service.store.db import create_engine, session_factory
from service.store.jobs import Job
from service.workers.outbox import DeliveryReport, deliver_due
from tests.support.ehr import TestEhr


def worker_settings(settings: Settings, ehr: TestEhr, **overrides: Any) -> Settings:
    return settings.model_copy(update={"ehr_base_url": ehr.base_url, **overrides})


async def deliver(
    settings: Settings, ehr: TestEhr, *, client: EhrClient | None = None, **overrides: Any
) -> DeliveryReport:
    """Deliver everything due now (claim batches until none is left), as configured (SMART included)."""
    configured = worker_settings(settings, ehr, **overrides)
    engine = create_engine(settings.database_url)
    ehr_api = client or settings_ehr(configured)
    total = DeliveryReport()
    try:
        while True:
            report = await deliver_due(session_factory(engine), ehr_api, configured)
            if report.claimed == 0:
                return total
            total = DeliveryReport(
                claimed=total.claimed + report.claimed,
                delivered=total.delivered + report.delivered,
                retrying=total.retrying + report.retrying,
                dead=total.dead + report.dead,
            )
    finally:
        if client is None:
            await ehr_api.aclose()
        await engine.dispose()


async def outbox(database_url: str) -> Sequence[Job]:
    engine = create_engine(database_url)
    try:
        async with session_factory(engine)() as session:
            return (await session.execute(select(Job).order_by(Job.id))).scalars().all()
    finally:
        await engine.dispose()
