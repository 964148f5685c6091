"""`peerway` command line: serve, migrate, token, deliver, worker, dead-letters, subscription, site, org, issuer,
user, client, auth, feed, mllp."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import Sequence

from pydantic import ValidationError

from service.auth import Role, mint_token
from service.cli import feeds, identity, sites
from service.errors import PeerwayError
from service.settings import Settings, describe_error, unknown_variables


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("peerway")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "(not installed)"


def _warn_unknown_variables() -> None:
    import os

    for name in unknown_variables(os.environ):
        print(f"peerway: warning: {name} is not a Peerway setting (a typo?); it is ignored", file=sys.stderr)


def _check_config(settings: Settings) -> int:
    print(f"configuration OK: env {settings.env}, database {settings.database_url.split(':', 1)[0]}")
    return 0


def _migrate(settings: Settings) -> None:
    from service.store.migrate import upgrade

    upgrade(settings.database_url)


def _serve(settings: Settings, api_processes: int | None = None) -> int:
    _migrate(settings)
    print(f"Peerway on {settings.base_url}", flush=True)
    print(f"  OpenAPI docs:        {settings.base_url}/docs", flush=True)
    print(f"  CapabilityStatement: {settings.base_url}/fhir/metadata", flush=True)
    print(f"  Database:            {settings.database_url}", flush=True)
    if api_processes is None:
        worker = "on" if settings.run_worker else "off"
    else:  # never inside an API process (service/cli/serve.py)
        worker = "its own process" if settings.run_worker else "off (run `peerway worker`)"
    print(f"  EHR (write-back):    {settings.ehr_base_url}  worker: {worker}", flush=True)
    print(
        f"  Limits:              headers {settings.max_header_bytes} B in {settings.header_timeout_seconds:g} s, "
        f"body {settings.max_body_bytes} B in {settings.body_timeout_seconds:g} s, "
        f"{settings.max_connections} connections",
        flush=True,
    )
    if api_processes is not None:
        from service.cli.serve import supervise

        return supervise(settings, api_processes)
    # The app is imported only here: a supervisor's children import it for themselves (about 4 s of CPU each).
    import uvicorn

    from service.api.server import server_config
    from service.main import create_app

    # h11 with deadlines, connection cap, our logging (no query strings, no PHI): see service/api/server.py.
    # Ctrl-C: uvicorn shuts down cleanly, then re-raises the signal; that is no error worth a traceback.
    with contextlib.suppress(KeyboardInterrupt):
        uvicorn.Server(server_config(settings, create_app(settings))).run()
    return 0


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


EXIT_CODES = """exit codes:
  0  done (for serve, worker and mllp: stopped by SIGTERM or Ctrl-C)
  1  refused or failed: the reason is one line on stderr (not found, conflict, the EHR said no)
  2  usage: a bad command line or a bad PEERWAY_* setting (named on stderr), or a command not allowed here

`peerway COMMAND --help` explains each command and its options; docs/configuration.md every setting."""


def build_parser() -> argparse.ArgumentParser:
    """Every command and option, each with its help (tests/unit/test_cli.py holds them to it)."""
    parser = argparse.ArgumentParser(
        prog="peerway", description=__doc__, epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"peerway {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="migrate the database, then serve the API with the outbox worker")
    serve.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="N API processes on one port, the job worker in a process of its own (none with PEERWAY_RUN_WORKER"
        "=false: run `peerway worker` apart); default one process serving and working",
    )
    sub.add_parser("migrate", help="bring the database to the newest schema (Alembic)")
    token = sub.add_parser("token", help="mint a development token (PEERWAY_ENV=dev only; HS256, role in the claims)")
    token.add_argument("--role", choices=[r.value for r in Role], help="default organization-coordinator with --org")
    token.add_argument("--sub", help="caller id; for a peer: the peer supporter's id (default: the role)")
    token.add_argument("--site", default="default", help="the site of a coordinator or EHR (default: default)")
    token.add_argument("--org", help="the peer organization (for an organization coordinator)")
    token.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds")
    sub.add_parser("deliver", help="deliver every due outbox row once, then exit")
    worker = sub.add_parser(
        "worker", help="run every job (EHR writes, EHR reads, recovery, channel checks) until SIGTERM (run several)"
    )
    worker.add_argument("--mllp", action="store_true", help="also run the HL7 v2 MLLP listener (`peerway mllp`)")
    dead = sub.add_parser("dead-letters", help="jobs the EHR refused for good: list, replay ID, discard ID")
    dead.add_argument(
        "action",
        choices=["list", "replay", "discard"],
        help="list: one JSON object a line; replay ID: queue it again once its cause is fixed; discard ID: give up",
    )
    dead.add_argument("id", type=int, nargs="?", help="the job (outbox row) id, for replay and discard")
    dead.add_argument("--site", help="only this site's rows (those of its clients); default every site's")
    subscription = sub.add_parser("subscription", help="Peerway's Subscription on the EHR: create (or update), status")
    subscription.add_argument(
        "action", choices=["create", "status"], help="create (or update) it at the EHR; status: its state and health"
    )
    subscription.add_argument("--id", help="the Subscription's id on the EHR (default PEERWAY_SUBSCRIPTION_ID)")
    subscription.add_argument("--topic", help="SubscriptionTopic canonical (default PEERWAY_SUBSCRIPTION_TOPIC)")
    subscription.add_argument(
        "--payload", choices=["empty", "id-only", "full-resource"], help="default PEERWAY_SUBSCRIPTION_PAYLOAD"
    )
    subscription.add_argument("--heartbeat", type=int, help="seconds between heartbeats (0: none)")
    subscription.add_argument("--filter", help="backport filter criteria, e.g. Encounter?location=Location/7")
    subscription.add_argument("--site", default="default", help="the site whose EHR gets the Subscription")
    subscription.add_argument(
        "--channel-secret",
        help="the site's channel secret (from `site add`/`rotate-secret`); default PEERWAY_SUBSCRIPTION_SECRET",
    )
    sites.add_parsers(sub)
    identity.add_parsers(sub)
    feeds.add_parsers(sub)
    sub.add_parser("check-config", help="check every PEERWAY_* setting; name a bad one in one line, warn on unknown")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        try:
            return _run(argv)
        finally:
            sys.stdout.flush()  # here, not at exit, so that a reader gone away is caught below
    except BrokenPipeError:  # `peerway site list | head`: the reader left; no traceback for that
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python's own flush at exit goes nowhere
        return 1


def _run(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _warn_unknown_variables()
    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"peerway: bad setting: {describe_error(exc)}", file=sys.stderr)
        return 2
    if args.command == "check-config":
        return _check_config(settings)
    if args.command != "serve":  # serve hands the same configuration to uvicorn
        from service.api.logs import configure_logging

        configure_logging(settings)
    if args.command == "serve":
        if args.workers is not None and args.workers < 1:
            parser.error("serve --workers needs at least 1")
        return _serve(settings, args.workers)
    elif args.command == "migrate":
        dialect = settings.database_url.split(":", 1)[0].split("+")[0]
        print(f"peerway: bringing the {dialect} database to the newest schema...", file=sys.stderr)
        _migrate(settings)
        from service.store.migrate import script_heads

        print(f"database at schema {', '.join(sorted(script_heads()))}")
    elif args.command == "token":
        if settings.env != "dev":
            print("peerway token: development tokens exist only with PEERWAY_ENV=dev", file=sys.stderr)
            return 2
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

        if args.mllp:
            return work(settings, lambda sessions, stop: feeds.listen(sessions, settings, stop))
        return work(settings)
    elif args.command == "dead-letters":
        from service.workers.command import dead_letters

        if args.action != "list" and args.id is None:
            parser.error(f"dead-letters {args.action} needs the job id")
        return dead_letters(settings, args.action, args.id, args.site)
    elif args.command == "subscription":
        _migrate(settings)
        return asyncio.run(_subscription(settings, args))
    elif args.command in ("issuer", "user", "client", "auth"):
        if args.action in ("add", "disable", "enable") and not args.id and args.command != "user":
            parser.error(f"{args.command} {args.action} needs the id")
        if args.command == "user" and args.action in ("disable", "enable") and not args.id:
            parser.error(f"user {args.action} needs the person's id")
        if args.command != "auth":
            _migrate(settings)
        return asyncio.run(identity.run(settings, args))
    elif args.command == "feed":
        _migrate(settings)
        return asyncio.run(feeds.run(settings, args))
    elif args.command == "mllp":
        _migrate(settings)
        return feeds.mllp(settings)
    elif args.command in ("site", "org"):
        if args.action not in ("list",) and not args.id:
            parser.error(f"{args.command} {args.action} needs the {args.command} id")
        _migrate(settings)
        return asyncio.run(sites.run(settings, args))
    return 0
