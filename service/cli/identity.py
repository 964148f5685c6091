"""`peerway issuer|user|client|auth`: who may sign in (people through their OpenID provider, systems through SMART
Backend Services) and Peerway's own token signing keys."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from service.auth import Role
from service.errors import PeerwayError
from service.settings import Settings


def add_parsers(sub: Any) -> None:
    issuer = sub.add_parser(
        "issuer", help="OpenID Connect providers trusted for people: add ID --url, list, disable ID"
    )
    issuer.add_argument(
        "action", choices=["add", "list", "disable", "enable"], help="add one; list them; disable or enable one"
    )
    issuer.add_argument("id", nargs="?", help="Peerway's name for the provider, e.g. north-idp")
    issuer.add_argument("--url", help="its issuer URL, exactly as its tokens' iss says")
    issuer.add_argument("--site", action="append", default=[], help="a site it may speak for (repeat)")
    issuer.add_argument("--org", action="append", default=[], help="a peer organization it may speak for (repeat)")
    issuer.add_argument("--jwks-file", help="pin its public keys (a JWK Set file) instead of using discovery")
    user = sub.add_parser("user", help="people registered to sign in: add, list, disable ID, enable ID")
    user.add_argument(
        "action", choices=["add", "list", "disable", "enable"], help="add someone; list them; disable or enable one"
    )
    user.add_argument("id", nargs="?", help="the person's id (disable, enable)")
    user.add_argument("--issuer", help="the registered provider (its Peerway id)")
    user.add_argument("--subject", help="the sub of the person's tokens at that provider")
    user.add_argument(
        "--role",
        choices=["administrator", "coordinator", "organization-coordinator", "peer"],
        help="what they do in Peerway (default coordinator)",
    )
    user.add_argument("--name", help="how Peerway names them")
    user.add_argument("--site", help="a coordinator's site")
    user.add_argument("--org", help="an organization coordinator's organization")
    user.add_argument("--peer", help="a peer's peer supporter id")
    client = sub.add_parser("client", help="systems registered for SMART Backend Services: add ID, list, disable ID")
    client.add_argument(
        "action", choices=["add", "list", "disable", "enable"], help="add one; list them; disable or enable one"
    )
    client.add_argument("id", nargs="?", help="the client_id")
    client.add_argument(
        "--kind", choices=["ehr", "organization"], default="ehr", help="a site's EHR or an organization's back end"
    )
    client.add_argument("--site", help="an EHR's site")
    client.add_argument("--org", help="an organization back end's organization")
    client.add_argument("--jwks-file", help="the client's public keys (a JWK Set file)")
    client.add_argument("--jwks-url", help="or where the client publishes them")
    client.add_argument("--scope", action="append", default=[], help="a SMART v2 scope it may be granted (repeat)")
    auth = sub.add_parser("auth", help="Peerway's token signing keys: rotate-key, jwks")
    auth.add_argument(
        "action",
        choices=["rotate-key", "jwks"],
        help="rotate-key: sign with a new key (the old one still verifies); jwks: print the public keys",
    )


async def run(settings: Settings, args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from service.app import registry
    from service.store.db import create_engine, session_factory

    def jwks(path: str | None) -> Any:
        return json.loads(Path(path).read_text()) if path else None

    engine = create_engine(settings.database_url)
    sessions = session_factory(engine)
    try:
        if args.command == "issuer":
            if args.action == "add":
                view: Any = await registry.add_issuer(
                    sessions, args.id, args.url or "", sites=tuple(args.site), organizations=tuple(args.org),
                    jwks=jwks(args.jwks_file),
                )  # fmt: skip
            elif args.action == "list":
                for issuer in await registry.list_issuers(sessions):
                    print(f"{issuer.id}\t{issuer.status}\t{issuer.issuer}\tsites={','.join(issuer.sites)}"
                          f"\torgs={','.join(issuer.organizations)}")  # fmt: skip
                return 0
            else:
                view = await registry.set_issuer_status(sessions, args.id, args.action == "enable")
        elif args.command == "user":
            if args.action == "add":
                new = registry.NewPerson(
                    issuer_id=args.issuer or "", subject=args.subject or "", role=Role(args.role or "coordinator"),
                    name=args.name or args.subject or "", site=args.site, organization=args.org, peer_id=args.peer,
                )  # fmt: skip
                view = await registry.add_person(sessions, new)
            elif args.action == "list":
                for person in await registry.list_people(sessions):
                    where = person.site or person.organization or person.peer_id or ""
                    print(f"{person.id}\t{person.status}\t{person.role}\t{where}\t{person.issuer}\t{person.subject}")
                return 0
            else:
                view = await registry.set_person_status(sessions, args.id, args.action == "enable")
        elif args.command == "client":
            if args.action == "add":
                new_client = registry.NewClient(
                    client_id=args.id, kind=args.kind, scopes=tuple(args.scope), site=args.site, organization=args.org,
                    jwks=jwks(args.jwks_file), jwks_url=args.jwks_url,
                )  # fmt: skip
                view = await registry.add_client(sessions, new_client)
            elif args.action == "list":
                for c in await registry.list_clients(sessions):
                    print(f"{c.client_id}\t{c.status}\t{c.kind}\t{c.site or c.organization}\t{' '.join(c.scopes)}")
                return 0
            else:
                view = await registry.set_client_status(sessions, args.id, args.action == "enable")
        else:
            from service.auth import keys

            path = Path(settings.auth_keys_path)
            signing = keys.rotate(path) if args.action == "rotate-key" else keys.load_or_create(path)
            print(json.dumps(signing.public_jwks(), indent=2) if args.action == "jwks" else signing.current_kid)
            return 0
    except PeerwayError as exc:
        print(f"peerway {args.command} {args.action}: {exc.diagnostics}", file=sys.stderr)
        return 1
    finally:
        await engine.dispose()
    print(json.dumps(view.__dict__, default=str))
    return 0
