"""Peerway's consent engine: pure functions over frozen records, no I/O.

    decision = evaluate(consents, AccessRequest(...))
    decision.is_permitted(item)

See consent/README.md for the rules.
"""

from consent.categories import (
    ACTION_ACCESS,
    ACTION_DISCLOSE,
    ASSIGNED_PEER_ROLE,
    CATEGORY_SYSTEM,
    EXPLICIT_ONLY,
    PURPOSE_COC,
    PURPOSE_TREAT,
    RESTRICTIVE,
    ROLE_IRCP,
    DataCategory,
)
from consent.engine import evaluate, unchanged_until
from consent.model import (
    AccessRequest,
    ActorRule,
    Coding,
    ConsentRecord,
    Decision,
    Identifier,
    ItemDecision,
    Period,
    Provision,
    RequestedItem,
)

__all__ = [
    "ACTION_ACCESS",
    "ACTION_DISCLOSE",
    "ASSIGNED_PEER_ROLE",
    "CATEGORY_SYSTEM",
    "EXPLICIT_ONLY",
    "PURPOSE_COC",
    "PURPOSE_TREAT",
    "RESTRICTIVE",
    "ROLE_IRCP",
    "AccessRequest",
    "ActorRule",
    "Coding",
    "ConsentRecord",
    "DataCategory",
    "Decision",
    "Identifier",
    "ItemDecision",
    "Period",
    "Provision",
    "RequestedItem",
    "evaluate",
    "unchanged_until",
]
