"""`peerway site` and `peerway org`: sites (hospitals), their EHR connections and peer organizations."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from service.settings import Settings


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


async def run(settings: Settings, args: argparse.Namespace) -> int:
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
                print(f"peerway: moving peer {args.peer} and their clients to {args.id}...", file=sys.stderr)
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


def add_parsers(sub: Any) -> None:
    site = sub.add_parser("site", help="sites (hospitals) and their EHR connections: add, set, list, ...")
    site.add_argument(
        "action",
        choices=["add", "set", "list", "rotate-secret", "disable", "enable"],
        help="add or set a site's EHR connection; list them; rotate-secret: a new subscription channel secret;"
        " disable or enable a site",
    )
    site.add_argument("id", nargs="?", help="the site id (a-z, 0-9, -), for all but list")
    site.add_argument("--name", help="the site's name, as people read it")
    site.add_argument("--fhir-base-url", help="the site's FHIR base; none: the PEERWAY_EHR_* settings")
    site.add_argument("--fhir-version", choices=["4.0.1", "4.3.0", "5.0.0"], help="the EHR's FHIR version")
    site.add_argument(
        "--write-mode",
        choices=["put", "conditional-create", "batch"],
        help="how contacts are written (docs/delivery.md)",
    )
    site.add_argument("--token-url", help="SMART Backend Services token endpoint")
    site.add_argument("--client-id", help="Peerway's SMART client id at the site")
    site.add_argument("--private-key", help="path of the SMART private key (PEM or JWKS)")
    site.add_argument("--key-id", help="kid of the SMART key")
    site.add_argument("--scope", help="SMART scopes to ask for")
    site.add_argument("--bearer-token-file", help="path of a file holding a static bearer token (without SMART)")
    org = sub.add_parser("org", help="peer organizations: add ID --name, list, adopt ID --peer PEER_ID")
    org.add_argument(
        "action", choices=["add", "list", "adopt"], help="add an organization; list them; adopt: take over a peer"
    )
    org.add_argument("id", nargs="?", help="the organization's id (a-z, 0-9, -), for add and adopt")
    org.add_argument("--name", help="the organization's name, as people read it (default: its id)")
    org.add_argument("--peer", help="for adopt: the peer supporter the organization takes over")
