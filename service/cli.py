"""`peerway` command line: serve, migrate, token, deliver."""

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
    from service.fhir.client import EhrClient
    from service.store.db import create_engine, session_factory
    from service.workers.outbox import deliver_due

    engine = create_engine(settings.database_url)
    token = settings.ehr_bearer_token.get_secret_value() if settings.ehr_bearer_token else None
    ehr = EhrClient(settings.ehr_base_url, bearer_token=token, timeout=settings.ehr_timeout_seconds)
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
