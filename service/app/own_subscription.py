"""Peerway's own Subscription on a site's EHR (R4 backport form): create it, and report its status.

The Subscription's channel header carries the site's channel secret, which is how its notifications are
attributed to the site. Only the secret's hash is stored, so the operator gives the secret (`--channel-secret`,
as `peerway site add` or `site rotate-secret` printed it); for PEERWAY_SUBSCRIPTION_SITE it defaults to
PEERWAY_SUBSCRIPTION_SECRET. A secret that is not the site's is refused before anything is sent to the EHR.
"""

from __future__ import annotations

import hmac

from service.app import notifications
from service.app.clock import new_id, utcnow
from service.app.recovery import ehr_status
from service.app.sites import site_of_secret
from service.ehr.client import EhrClient
from service.errors import InvalidResource
from service.fhir.backport import backport_subscription, subscription_report
from service.fhir.notification import SubscriptionReport
from service.settings import Settings
from service.store import channel as store
from service.store.db import SessionFactory, transaction


async def create_subscription(
    sessions: SessionFactory,
    reader: EhrClient,
    settings: Settings,
    *,
    subscription_id: str,
    topic: str,
    payload: str,
    heartbeat_seconds: int,
    filter_criteria: str | None,
    site: str | None = None,
    channel_secret: str | None = None,
) -> SubscriptionReport:
    """Create (or update: PUT with our id is idempotent) Peerway's R4 backport Subscription on the site's EHR
    (`reader` reaches it) and record the channel, so its heartbeat is watched and its first events count from 1."""
    site = site or settings.subscription_site
    secret = await _channel_secret(sessions, settings, site, channel_secret)
    resource = backport_subscription(
        subscription_id=subscription_id,
        topic=topic,
        endpoint=f"{settings.base_url}/fhir/subscription-notification",
        header=f"{settings.subscription_header}: {secret}",
        payload=payload,
        heartbeat_seconds=heartbeat_seconds,
        timeout_seconds=max(1, int(settings.ehr_timeout_seconds)),
        filter_criteria=filter_criteria,
    )
    report = subscription_report(await reader.put(resource), "read")
    now = utcnow()
    async with transaction(sessions) as session:
        channel = await store.channel_by_subscription(session, site, report.subscription)
        if channel is None:
            channel = store.SubscriptionChannel(
                id=new_id(),
                site=site,
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


async def _channel_secret(sessions: SessionFactory, settings: Settings, site: str, given: str | None) -> str:
    """The secret the site's notifications must carry: the one given, checked against the site's stored hash (or
    PEERWAY_SUBSCRIPTION_SECRET, for PEERWAY_SUBSCRIPTION_SITE)."""
    legacy = settings.subscription_secret.get_secret_value() if settings.subscription_secret else None
    if given is None:
        if legacy is None or site != settings.subscription_site:
            raise InvalidResource(
                f"give site {site}'s channel secret (--channel-secret, as `peerway site add` or "
                "`peerway site rotate-secret` printed it): the EHR must send it in the channel header",
                "channel-secret",
            )
        return legacy
    given = given.strip()
    if legacy is not None and site == settings.subscription_site and hmac.compare_digest(given, legacy):
        return given
    if not given or await site_of_secret(sessions, given) != site:
        raise InvalidResource(f"that is not the channel secret of the active site {site}", "channel-secret")
    return given


async def subscription_status(
    sessions: SessionFactory, reader: EhrClient, settings: Settings, subscription_id: str, site: str | None = None
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
            if h.subscription == subscription and h.site == (site or settings.subscription_site)
        ),
        None,
    )
    return report, health
