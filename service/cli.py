"""`peerway` command line: serve, migrate, token, deliver, worker, dead-letters."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from service.auth import Role, mint_token
from service.settings import Settings


def _migrate(settings: Settings) -> None:
    from service.store.migrate import upgrade

    upgrade(settings.database_url)


def _serve(settings: Settings) -> None:
    import uvicorn

    from service.main import create_app

    _migrate(settings)
    print(f"Peerway on {settings.base_url}", flush=True)
    print(f"  OpenAPI docs:        {settings.base_url}/docs", flush=True)
    print(f"  CapabilityStatement: {settings.base_url}/fhir/metadata", flush=True)
    print(f"  Database:            {settings.database_url}", flush=True)
    print(
        f"  EHR (write-back):    {settings.ehr_base_url}  worker: {'on' if settings.run_worker else 'off'}",
        flush=True,
    )
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="info")


async def _deliver_once(settings: Settings) -> None:
    from service.fhir.smart import ehr_client
    from service.store.db import create_engine, session_factory
    from service.workers.outbox import deliver_due

    engine = create_engine(settings.database_url)
    ehr = ehr_client(settings)
    try:
        while True:
            report = await deliver_due(session_factory(engine), ehr, settings)
            print(
                f"claimed {report.claimed} delivered {report.delivered} retrying {report.retrying} dead {report.dead}"
            )
            if report.claimed == 0:
                break
    finally:
        await ehr.aclose()
        await engine.dispose()


async def _subscription(settings: Settings, args: argparse.Namespace) -> int:
    """`peerway subscription create|status`: Peerway's R4 backport Subscription on the EHR (issue 4)."""
    from service.app import own_subscription
    from service.errors import PeerwayError
    from service.fhir.fetch import EhrReader
    from service.fhir.smart import token_provider
    from service.store.db import create_engine, session_factory

    engine = create_engine(settings.database_url)
    # The same authorisation as the write-back: SMART Backend Services when configured, else a static token.
    reader = EhrReader(settings.ehr_base_url, token_provider(settings).token, timeout=settings.ehr_timeout_seconds)
    subscription_id = args.id or settings.subscription_id
    try:
        if args.action == "create":
            report = await own_subscription.create_subscription(
                session_factory(engine),
                reader,
                settings,
                subscription_id=subscription_id,
                topic=args.topic or settings.subscription_topic,
                payload=args.payload or settings.subscription_payload,
                heartbeat_seconds=settings.subscription_heartbeat_seconds if args.heartbeat is None else args.heartbeat,
                filter_criteria=args.filter or settings.subscription_filter,
            )
            print(f"{report.subscription} at {settings.ehr_base_url}: status {report.status}, topic {report.topic}")
            endpoint = f"{settings.base_url}/fhir/subscription-notification"
            print(f"  notifications to {endpoint} (header {settings.subscription_header})")
            return 0
        found, health = await own_subscription.subscription_status(
            session_factory(engine), reader, settings, subscription_id
        )
    except PeerwayError as exc:
        print(f"subscription {args.action}: {exc.diagnostics}", file=sys.stderr)
        return 1
    finally:
        await reader.aclose()
        await engine.dispose()
    if found is None:
        print(f"Subscription/{subscription_id}: not found at {settings.ehr_base_url}")
    else:
        since = "unknown" if found.events_since_start is None else found.events_since_start
        print(f"{found.subscription} ({found.source}): status {found.status}, events since start {since}")
        print(f"  topic {found.topic}, heartbeat {found.heartbeat_seconds or '-'} s, error {found.error or '-'}")
    if health is not None:
        print(
            f"  channel {health.health}: last seen {health.last_seen_at or 'never'}, events through "
            f"{health.contiguous_through} of {health.highest_event}, missing {health.missing_events}, "
            f"work pending {health.pending_work}, failed {health.failed_work}"
        )
    return 0 if found is not None else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="peerway", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="migrate the database, then serve the API with the outbox worker")
    sub.add_parser("migrate", help="bring the database to the newest schema (Alembic)")
    token = sub.add_parser("token", help="mint a bearer token for local use")
    token.add_argument("--role", required=True, choices=[r.value for r in Role])
    token.add_argument("--sub", required=True, help="caller id; for a peer: the peer supporter's id")
    token.add_argument("--site", default="default")
    token.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds")
    sub.add_parser("deliver", help="deliver every due outbox row once, then exit")
    sub.add_parser("worker", help="deliver the outbox until SIGTERM (run several on PostgreSQL)")
    dead = sub.add_parser("dead-letters", help="writes the EHR refused for good: list, replay ID, discard ID")
    dead.add_argument("action", choices=["list", "replay", "discard"])
    dead.add_argument("id", type=int, nargs="?", help="the outbox row (for replay and discard)")
    subscription = sub.add_parser("subscription", help="Peerway's Subscription on the EHR: create (or update), status")
    subscription.add_argument("action", choices=["create", "status"])
    subscription.add_argument("--id", help="the Subscription's id on the EHR (default PEERWAY_SUBSCRIPTION_ID)")
    subscription.add_argument("--topic", help="SubscriptionTopic canonical (default PEERWAY_SUBSCRIPTION_TOPIC)")
    subscription.add_argument("--payload", choices=["empty", "id-only", "full-resource"])
    subscription.add_argument("--heartbeat", type=int, help="seconds between heartbeats (0: none)")
    subscription.add_argument("--filter", help="backport filter criteria, e.g. Encounter?location=Location/7")
    args = parser.parse_args(argv)
    settings = Settings()
    if args.command == "serve":
        _serve(settings)
    elif args.command == "migrate":
        _migrate(settings)
    elif args.command == "token":
        print(mint_token(settings, args.sub, Role(args.role), site=args.site, ttl=args.ttl))
    elif args.command == "deliver":
        asyncio.run(_deliver_once(settings))
    elif args.command == "worker":
        from service.workers.command import work

        return work(settings)
    elif args.command == "dead-letters":
        from service.workers.command import dead_letters

        if args.action != "list" and args.id is None:
            parser.error(f"dead-letters {args.action} needs the outbox row id")
        return dead_letters(settings, args.action, args.id)
    elif args.command == "subscription":
        _migrate(settings)
        return asyncio.run(_subscription(settings, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
