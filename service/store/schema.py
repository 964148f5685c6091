"""Every table Peerway has: importing this module registers all model modules on Base.metadata.

Alembic's env and the schema test import this, so a capability that adds a model module (store/<name>.py)
adds one import line here.
"""

from __future__ import annotations

from service.store import (
    alerts,
    background,
    channel,
    delivery,
    feeds,
    identity,
    jobs,
    linking,
    matching,
    models,
    sites,
    web,
)
from service.store.models import Base

__all__ = [
    "Base",
    "alerts",
    "background",
    "channel",
    "delivery",
    "feeds",
    "identity",
    "jobs",
    "linking",
    "matching",
    "models",
    "sites",
    "web",
]
