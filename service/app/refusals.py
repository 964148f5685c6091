"""A peer asking about a client or a contact that is not theirs (or does not exist) gets the same 404 either way,
so they learn nothing; the log gets one line, so an operator can see a peer probing for clients. Ids only: the
peer's, and the id asked for when it has the form of Peerway's own ids (random version 4 UUIDs). Anything else a caller
put in the path is not written out, so no one can put a name or a birth date into the log through it.

A peer who keeps probing cannot flood the log: each peer's first LINES_PER_WINDOW refusals in a WINDOW_SECONDS
window are logged one by one, then one line says the rest of the window is counted only, and the peer's next
refusal after the window (or any peer's, if they stopped) says how many went unlogged. The 404 is the same
whatever the log does. Counted per process, for at most MAX_PEERS peers at once (the longest quiet forgotten
first, their count told).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from service.errors import NotFound

__all__ = ["RefusalLog", "not_theirs"]

log = logging.getLogger(__name__)

# Peerway's ids are random (version 4) UUIDs, as service/app/clock.new_id makes them.
_OWN_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
LINES_PER_WINDOW = 20
WINDOW_SECONDS = 60.0
MAX_PEERS = 10_000


@dataclass
class _Window:
    started: float
    refused: int = 0  # refusals in this window, logged or not


class RefusalLog:
    """What to log of each peer's refusals (see the module's docstring); `clock` in seconds.

    A window's unlogged refusals are told when that peer is next refused, or, if they stop, when any peer is
    refused after the window ended, or when the peer is forgotten to make room; and at 100, 1,000, 10,000...
    refusals within one window, as they happen."""

    def __init__(
        self,
        lines: int = LINES_PER_WINDOW,
        window: float = WINDOW_SECONDS,
        max_peers: int = MAX_PEERS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.lines, self.window, self.max_peers, self.clock = lines, window, max_peers, clock
        self._peers: OrderedDict[str, _Window] = OrderedDict()  # least recently refused first

    def refused(self, peer: str, what: str) -> None:
        now = self.clock()
        current = self._peers.pop(peer, None)
        if current is not None and now - current.started >= self.window:
            self._close(peer, current)
            current = None
        self._sweep(now)
        if current is None:
            current = _Window(now)
        self._peers[peer] = current
        while len(self._peers) > self.max_peers:
            self._close(*self._peers.popitem(last=False))
        current.refused += 1
        if current.refused <= self.lines:
            log.warning("refused peer %s: %s is not one of theirs, or does not exist", peer, what)
        if current.refused == self.lines:
            log.warning(
                "refused peer %s %d times within %g s: their further refusals are counted, not logged, until the"
                " window ends",
                peer,
                self.lines,
                self.window,
            )
        elif current.refused > self.lines and current.refused >= 100 and _power_of_ten(current.refused):
            log.warning("refused peer %s %d times within this window (probing?)", peer, current.refused)

    def _sweep(self, now: float) -> None:
        """Close the windows that have ended, from the least recently refused peer on (stops at one still open)."""
        while self._peers:
            peer, oldest = next(iter(self._peers.items()))
            if now - oldest.started < self.window:
                return
            del self._peers[peer]
            self._close(peer, oldest)

    def _close(self, peer: str, window: _Window) -> None:
        unlogged = window.refused - self.lines
        if unlogged > 0:
            log.warning("refused peer %s %d more times, not logged one by one (probing?)", peer, unlogged)


def _power_of_ten(n: int) -> bool:
    while n % 10 == 0:
        n //= 10
    return n == 1


_log = RefusalLog()
_KEY = os.urandom(32)  # this process's key for the digests of ids not of Peerway's form


def not_theirs(peer_id: str, resource_type: str, asked: str) -> NotFound:
    """The 404 for `resource_type`/`asked` (raise it), after logging the refusal by ids."""
    shown = asked if _OWN_ID.fullmatch(asked) else "(an id not of Peerway's form)"
    if _OWN_ID.fullmatch(peer_id):
        peer = peer_id
    else:  # not written out; a short keyed digest keeps such callers apart, so one cannot use another's lines
        digest = hmac.new(_KEY, peer_id.encode(), hashlib.sha256).hexdigest()[:8]  # keyed: not guessable back
        peer = f"(a caller whose id is not of Peerway's form, #{digest})"
    _log.refused(peer, f"{resource_type}/{shown}")
    return NotFound(f"{resource_type}/{asked} is not known")
