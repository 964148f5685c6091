"""A peer asking about a client or a contact that is not theirs (or does not exist) gets the same 404 either way,
so they learn nothing; the log gets one line, so an operator can see a peer probing for clients. Ids only: the
peer's, and the id asked for when it has the form of Peerway's own ids (random version 4 UUIDs). Anything else a caller
put in the path is not written out, so no one can put a name or a birth date into the log through it.
"""

from __future__ import annotations

import logging
import re

from service.errors import NotFound

__all__ = ["not_theirs"]

log = logging.getLogger(__name__)

# Peerway's ids are random (version 4) UUIDs, as service/app/clock.new_id makes them.
_OWN_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


def not_theirs(peer_id: str, resource_type: str, asked: str) -> NotFound:
    """The 404 for `resource_type`/`asked` (raise it), after logging the refusal by ids."""
    shown = asked if _OWN_ID.fullmatch(asked) else "(an id not of Peerway's form)"
    peer = peer_id if _OWN_ID.fullmatch(peer_id) else "(a caller whose id is not of Peerway's form)"
    log.warning("refused peer %s: %s/%s is not one of theirs, or does not exist", peer, resource_type, shown)
    return NotFound(f"{resource_type}/{asked} is not known")
