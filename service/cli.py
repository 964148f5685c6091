"""`peerway` command line: serve, migrate, token, deliver, worker, dead-letters, subscription, site, org."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from typing import Any

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
    from service.app.sites import site_directory
    from service.store.db import create_engine, session_factory
    from service.workers.outbox import deliver_due

    engine = create_engine(settings.database_url)
    sessions = session_factory(engine)
    ehr = site_directory(sessions, settings)  # each row to its client's site
    try:
        while True:
            report = await deliver_due(sessions, ehr, settings)
            print(
                f"claimed {report.claimed} delivered {report.delivered} retrying {report.retrying} dead {report.dead}"
            )
            if report.claimed == 0:
                break
    finally:
        await ehr.aclose()
        await engine.dispose()


async def _subscription(settings: Settings, args: argparse.Namespace) -> int:
    """`peerway subscription create|status --site S`: Peerway's R4 backport Subscription on the site's EHR."""
    from service.app import own_subscription
    from service.app.sites import site_directory
    from service.errors import PeerwayError
    from service.store.db import create_engine, session_factory

    engine = create_engine(settings.database_url)
    sessions = session_factory(engine)
    directory = site_directory(sessions, settings)  # the site's EHR, with the site's authorisation
    subscription_id = args.id or settings.subscription_id
    site = args.site
    base_url = "?"
    try:
        connection = await directory.connection(site)
        base_url = connection.fhir_base_url
        reader = await directory.client(site)
        if args.action == "create":
            report = await own_subscription.create_subscription(
                sessions,
                reader,
                settings,
                subscription_id=subscription_id,
                topic=args.topic or settings.subscription_topic,
                payload=args.payload or settings.subscription_payload,
                heartbeat_seconds=settings.subscription_heartbeat_seconds if args.heartbeat is None else args.heartbeat,
                filter_criteria=args.filter or settings.subscription_filter,
                site=site,
                channel_secret=args.channel_secret,
            )
            print(f"{report.subscription} at {base_url} (site {site}): status {report.status}, topic {report.topic}")
            endpoint = f"{settings.base_url}/fhir/subscription-notification"
            print(f"  notifications to {endpoint} (header {settings.subscription_header})")
            return 0
        found, health = await own_subscription.subscription_status(sessions, reader, settings, subscription_id, site)
    except PeerwayError as exc:
        print(f"subscription {args.action}: {exc.diagnostics}", file=sys.stderr)
        return 1
    finally:
        await directory.aclose()
        await engine.dispose()
    if found is None:
        print(f"Subscription/{subscription_id}: not found at {base_url} (site {site})")
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


def _site_spec(args: argparse.Namespace) -> Any:
    from service.app.sites import SiteSpec

    return SiteSpec(
        name=args.name,
        fhir_base_url=args.fhir_base_url,
        fhir_version=args.fhir_version,
        write_mode=args.write_mode,
        token_url=args.token_url,
        client_id=args.client_id,
        private_key_path=args.private_key,
        key_id=args.key_id,
        scope=args.scope,
        bearer_token_path=args.bearer_token_file,
    )


def _site_line(view: Any) -> str:
    base = view.fhir_base_url or ("(PEERWAY_EHR_BASE_URL)" if view.uses_settings else "(none)")
    return (
        f"{view.id}\t{view.status}\t{base}\tFHIR {view.fhir_version}\t"
        f"write {view.write_mode}\tSMART client {view.smart_client_id or '-'}\t{view.name}"
    )


async def _sites(settings: Settings, args: argparse.Namespace) -> int:
    """`peerway site add|set|list|rotate-secret|disable|enable` and `peerway org add|list|adopt`."""
    from dataclasses import replace

    from service.app import peers, sites
    from service.errors import PeerwayError
    from service.store.db import create_engine, session_factory

    engine = create_engine(settings.database_url)
    sessions = session_factory(engine)
    try:
        if args.command == "org":
            if args.action == "add":
                await sites.add_organization(sessions, args.id, args.name or args.id)
                print(f"organization {args.id} added")
            elif args.action == "adopt":
                if not args.peer:
                    print("org adopt needs --peer PEER_ID", file=sys.stderr)
                    return 2
                moved = await peers.move_peer(sessions, args.peer, args.id)
                print(f"peer {moved.id} now belongs to {args.id}; sites: {', '.join(moved.sites) or '-'}")
            else:
                for organization_id, name in await sites.list_organizations(sessions):
                    print(f"{organization_id}\t{name}")
            return 0
        if args.action == "add":
            view, secret = await sites.add_site(sessions, args.id, _site_spec(args))
            print(_site_line(view))
            print(f"channel secret (shown once; the EHR sends it in {settings.subscription_header}): {secret}")
        elif args.action == "set":
            print(_site_line(await sites.update_site(sessions, args.id, _site_spec(args))))
        elif args.action == "disable":
            view = await sites.update_site(sessions, args.id, replace(_site_spec(args), status="disabled"))
            print(_site_line(view))
        elif args.action == "enable":
            view = await sites.update_site(sessions, args.id, replace(_site_spec(args), status="active"))
            print(_site_line(view))
        elif args.action == "rotate-secret":
            secret = await sites.rotate_secret(sessions, args.id)
            print(f"new channel secret for {args.id} (shown once; the old one no longer works): {secret}")
        else:
            for view in await sites.list_sites(sessions):
                print(_site_line(view))
    except PeerwayError as exc:
        print(f"{args.command} {args.action}: {exc.diagnostics}", file=sys.stderr)
        return 1
    finally:
        await engine.dispose()
    return 0


def _add_site_parsers(sub: Any) -> None:
    site = sub.add_parser("site", help="sites (hospitals) and their EHR connections: add, set, list, ...")
    site.add_argument("action", choices=["add", "set", "list", "rotate-secret", "disable", "enable"])
    site.add_argument("id", nargs="?", help="the site id (a-z, 0-9, -), for all but list")
    site.add_argument("--name")
    site.add_argument("--fhir-base-url", help="the site's FHIR base; none: the PEERWAY_EHR_* settings")
    site.add_argument("--fhir-version", choices=["4.0.1", "4.3.0", "5.0.0"])
    site.add_argument("--write-mode", choices=["put", "conditional-create"])
    site.add_argument("--token-url", help="SMART Backend Services token endpoint")
    site.add_argument("--client-id", help="Peerway's SMART client id at the site")
    site.add_argument("--private-key", help="path of the SMART private key (PEM or JWKS)")
    site.add_argument("--key-id", help="kid of the SMART key")
    site.add_argument("--scope", help="SMART scopes to ask for")
    site.add_argument("--bearer-token-file", help="path of a file holding a static bearer token (without SMART)")
    org = sub.add_parser("org", help="peer organizations: add ID --name, list, adopt ID --peer PEER_ID")
    org.add_argument("action", choices=["add", "list", "adopt"])
    org.add_argument("id", nargs="?")
    org.add_argument("--name")
    org.add_argument("--peer", help="for adopt: the peer supporter the organization takes over")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="peerway", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="migrate the database, then serve the API with the outbox worker")
    sub.add_parser("migrate", help="bring the database to the newest schema (Alembic)")
    token = sub.add_parser("token", help="mint a bearer token for local use")
    token.add_argument("--role", choices=[r.value for r in Role], help="default organization-coordinator with --org")
    token.add_argument("--sub", help="caller id; for a peer: the peer supporter's id (default: the role)")
    token.add_argument("--site", default="default")
    token.add_argument("--org", help="the peer organization (for an organization coordinator)")
    token.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds")
    sub.add_parser("deliver", help="deliver every due outbox row once, then exit")
    sub.add_parser("worker", help="deliver the outbox until SIGTERM (run several on PostgreSQL)")
    dead = sub.add_parser("dead-letters", help="writes the EHR refused for good: list, replay ID, discard ID")
    dead.add_argument("action", choices=["list", "replay", "discard"])
    dead.add_argument("id", type=int, nargs="?", help="the outbox row (for replay and discard)")
    dead.add_argument("--site", help="only this site's rows (those of its clients); default every site's")
    subscription = sub.add_parser("subscription", help="Peerway's Subscription on the EHR: create (or update), status")
    subscription.add_argument("action", choices=["create", "status"])
    subscription.add_argument("--id", help="the Subscription's id on the EHR (default PEERWAY_SUBSCRIPTION_ID)")
    subscription.add_argument("--topic", help="SubscriptionTopic canonical (default PEERWAY_SUBSCRIPTION_TOPIC)")
    subscription.add_argument("--payload", choices=["empty", "id-only", "full-resource"])
    subscription.add_argument("--heartbeat", type=int, help="seconds between heartbeats (0: none)")
    subscription.add_argument("--filter", help="backport filter criteria, e.g. Encounter?location=Location/7")
    subscription.add_argument("--site", default="default", help="the site whose EHR gets the Subscription")
    subscription.add_argument(
        "--channel-secret",
        help="the site's channel secret (from `site add`/`rotate-secret`); default PEERWAY_SUBSCRIPTION_SECRET",
    )
    _add_site_parsers(sub)
    args = parser.parse_args(argv)
    settings = Settings()
    if args.command == "serve":
        _serve(settings)
    elif args.command == "migrate":
        _migrate(settings)
    elif args.command == "token":
        role = Role(args.role) if args.role else Role.ORGANIZATION_COORDINATOR if args.org else None
        if role is None:
            parser.error("token needs --role (or --org for an organization coordinator)")
        if role is Role.ORGANIZATION_COORDINATOR and not args.org:
            parser.error("an organization coordinator's token needs --org")
        subject = args.sub or role.value
        print(mint_token(settings, subject, role, site=args.site, organization=args.org, ttl=args.ttl))
    elif args.command == "deliver":
        asyncio.run(_deliver_once(settings))
    elif args.command == "worker":
        from service.workers.command import work

        return work(settings)
    elif args.command == "dead-letters":
        from service.workers.command import dead_letters

        if args.action != "list" and args.id is None:
            parser.error(f"dead-letters {args.action} needs the outbox row id")
        return dead_letters(settings, args.action, args.id, args.site)
    elif args.command == "subscription":
        _migrate(settings)
        return asyncio.run(_subscription(settings, args))
    elif args.command in ("site", "org"):
        if args.action not in ("list",) and not args.id:
            parser.error(f"{args.command} {args.action} needs the {args.command} id")
        _migrate(settings)
        return asyncio.run(_sites(settings, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
