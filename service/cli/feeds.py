"""`peerway feed add|list` (HL7 v2 ADT feeds: which site a port, or a sending facility on it, speaks for) and
`peerway mllp` (the MLLP listener on every registered port, until SIGTERM)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from datetime import timedelta
from typing import Any

from service.settings import Settings


def add_parsers(sub: Any) -> None:
    feed = sub.add_parser("feed", help="HL7 v2 ADT feeds over MLLP: add, list (with their health)")
    feed.add_argument("action", choices=["add", "list"], help="add a feed (ID --port); list them with their health")
    feed.add_argument("id", nargs="?", help="the feed's id (for add)")
    feed.add_argument("--site", default="default", help="the site the feed speaks for")
    feed.add_argument("--port", type=int, help="the listener port the interface engine connects to")
    feed.add_argument("--facility", default="", help="MSH-4 (first component); default: any facility on the port")
    feed.add_argument("--timezone", default="UTC", help="IANA zone of times sent without an offset")
    sub.add_parser("mllp", help="listen for HL7 v2 over MLLP on every registered feed's port until SIGTERM")


async def run(settings: Settings, args: argparse.Namespace) -> int:
    from service.app import feeds
    from service.errors import PeerwayError
    from service.store.db import create_engine, session_factory

    engine = create_engine(settings.database_url)
    sessions = session_factory(engine)
    try:
        if args.action == "add":
            if not args.id or args.port is None:
                print("feed add needs an id and --port", file=sys.stderr)
                return 2
            view = await feeds.add_feed(sessions, args.id, args.site, args.port, args.facility, args.timezone)
            print(f"feed {view.id}: port {view.port}, facility {view.facility or '(any)'} -> site {view.site}")
            return 0
        silence = timedelta(seconds=settings.hl7_feed_silence_seconds)
        for v in await feeds.list_feeds(sessions, args.site if args.site != "default" else None, silence):
            print(
                f"{v.id}\t{v.site}\tport {v.port}\t{v.facility or '(any)'}\t{v.status}\t"
                f"accepted {v.accepted} refused {v.refused}\tlast {v.last_message_at or 'never'}\t"
                f"error {v.last_error or '-'}\tmerges {len(v.merges)}"
            )
        return 0
    except PeerwayError as exc:
        print(f"feed {args.action}: {exc.diagnostics}", file=sys.stderr)
        return 1
    finally:
        await engine.dispose()


async def listen(sessions: Any, settings: Settings, stop: asyncio.Event) -> None:
    """The listener on every registered port until `stop` (runs alone or beside the worker)."""
    from service.app.feeds import feed_ports
    from service.hl7v2.listener import serve

    ports = await feed_ports(sessions)
    if not ports:
        logging.getLogger("service.hl7v2").warning("no HL7 v2 feed registered (`peerway feed add`); not listening")
        await stop.wait()
        return
    await serve(sessions, settings, ports, stop)


async def _mllp(settings: Settings) -> int:
    from service.store.db import create_engine, session_factory

    engine = create_engine(settings.database_url)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await listen(session_factory(engine), settings, stop)
    finally:
        await engine.dispose()
    return 0


def mllp(settings: Settings) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return asyncio.run(_mllp(settings))
