"""Accounting of disclosures: who saw (or was refused) which of a client's information, and when."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from service.errors import InvalidResource
from service.store import repository
from service.store.db import SessionFactory
from service.store.models import Client


async def disclosures(
    sessions: SessionFactory, site: str, patient: str, since: datetime | None = None, until: datetime | None = None
) -> Sequence[dict[str, Any]]:
    """The AuditEvents about one client (Patient/<client id> or the EHR's Patient id), oldest first."""
    for name, value in (("since", since), ("until", until)):
        if value is not None and value.tzinfo is None:
            raise InvalidResource(f"{name} needs a time zone", name)
    patient_id = patient.removeprefix("Patient/")
    async with sessions() as session:
        client = await session.get(Client, patient_id) or await repository.client_by_ehr_id(session, site, patient_id)
        if client is None:
            return []
        return [json.loads(r.resource_json) for r in await repository.audit_of(session, client.id, since, until)]
