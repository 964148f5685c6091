"""Accounting of disclosures: who saw (or was refused) which of a client's information, and when."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from service.errors import InvalidResource
from service.store import repository
from service.store.db import SessionFactory


async def disclosures(
    sessions: SessionFactory, site: str, patient: str, since: datetime | None = None, until: datetime | None = None
) -> Sequence[dict[str, Any]]:
    """The AuditEvents about one client (Patient/<client id> or the EHR's Patient id), oldest first."""
    for name, value in (("since", since), ("until", until)):
        if value is not None and value.tzinfo is None:
            raise InvalidResource(f"{name} needs a time zone", name)
    async with sessions() as session:
        client = await repository.client_named(session, site, patient)  # the site's clients only
        if client is None:
            return []
        return [json.loads(r.resource_json) for r in await repository.audit_of(session, client.id, since, until)]
