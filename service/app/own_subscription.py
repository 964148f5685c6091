"""Peerway's own Subscription on the EHR (R4 backport form): create it, and report its status."""

from __future__ import annotations

from service.app import notifications
from service.app.channels import ehr_status
from service.app.clock import new_id, utcnow
from service.domain import SubscriptionReport
from service.errors import InvalidResource
from service.fhir.fetch import (
    EhrReader,
    backport_subscription,
    subscription_report,
)
from service.settings import Settings
from service.store import channel as store
from service.store.db import SessionFactory, transaction


async def create_subscription(
    sessions: SessionFactory,
    reader: EhrReader,
    settings: Settings,
    *,
    subscription_id: str,
    topic: str,
    payload: str,
    heartbeat_seconds: int,
    filter_criteria: str | None,
) -> SubscriptionReport:
    """Create (or update: PUT with our id is idempotent) Peerway's R4 backport Subscription on the EHR and
    record the channel, so its heartbeat is watched and its first events count from 1."""
    if settings.subscription_secret is None:
        raise InvalidResource("set PEERWAY_SUBSCRIPTION_SECRET: the EHR must send it in the channel header")
    resource = backport_subscription(
        subscription_id=subscription_id,
        topic=topic,
        endpoint=f"{settings.base_url}/fhir/subscription-notification",
        header=f"{settings.subscription_header}: {settings.subscription_secret.get_secret_value()}",
        payload=payload,
        heartbeat_seconds=heartbeat_seconds,
        timeout_seconds=max(1, int(settings.ehr_timeout_seconds)),
        filter_criteria=filter_criteria,
    )
    report = subscription_report(await reader.put(resource), "read")
    now = utcnow()
    async with transaction(sessions) as session:
        channel = await store.channel_by_subscription(session, settings.subscription_site, report.subscription)
        if channel is None:
            channel = store.SubscriptionChannel(
                id=new_id(),
                site=settings.subscription_site,
                subscription=report.subscription,
                created_at=now,
                highest_event=0,
                contiguous_through=0,
            )
            session.add(channel)
        channel.created_by_peerway = True
        channel.topic = topic[:500]
        channel.payload = payload
        channel.heartbeat_seconds = heartbeat_seconds or None
        channel.ehr_status = report.status
    return report


async def subscription_status(
    sessions: SessionFactory, reader: EhrReader, settings: Settings, subscription_id: str
) -> tuple[SubscriptionReport | None, notifications.ChannelHealth | None]:
    """The EHR's report on our Subscription ($status, else a read) and the channel's health as we see it."""
    report = await ehr_status(reader, subscription_id)
    if report is None:
        data = await reader.read("Subscription", subscription_id)
        report = subscription_report(data, "read") if data is not None else None
    subscription = f"Subscription/{subscription_id}"
    health = next(
        (
            h
            for h in await notifications.channel_health(sessions, settings)
            if h.subscription == subscription and h.site == settings.subscription_site
        ),
        None,
    )
    return report, health
