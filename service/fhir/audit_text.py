"""An AuditEvent's JSON text, rendered once for every read that records the same disclosure.

A summary read that reuses a decided summary records the same AuditEvent every time but for its id and its
`recorded` instant; building the event as dicts and serialising it on every read cost about a twentieth of the
read. Here the members around those two are serialised once; each read joins its id and instant in between.
The text is exactly what build.to_json gives for the whole event (json.dumps with compact separators writes
an object's members in order, each as `key:value`, comma-separated), which tests/unit/fhir checks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from service.fhir.build import fhir_instant

_PER_READ = ("id", "recorded")


def _members(resource: dict[str, Any]) -> list[str]:
    return [json.dumps(key) + ":" + json.dumps(value, separators=(",", ":")) for key, value in resource.items()]


@dataclass(frozen=True)
class AuditEventText:
    """The event's text in three pieces: before `"id":`, between the id and `"recorded":`, after the instant."""

    head: str
    middle: str
    tail: str
    outcome: str

    @classmethod
    def of(cls, event: dict[str, Any]) -> AuditEventText:
        """From an AuditEvent built with an id before `recorded` (any values: both are replaced per read)."""
        names = list(event)
        if [n for n in names if n in _PER_READ] != list(_PER_READ):
            raise ValueError("the event has no id before its recorded instant")
        members = _members(event)
        at_id, at_recorded = names.index("id"), names.index("recorded")
        head = "{" + "".join(m + "," for m in members[:at_id]) + '"id":'
        middle = "".join("," + m for m in members[at_id + 1 : at_recorded]) + ',"recorded":'
        tail = "".join("," + m for m in members[at_recorded + 1 :]) + "}"
        return cls(head, middle, tail, str(event["outcome"]))

    def render(self, audit_id: str, recorded_at: datetime) -> str:
        """build.to_json of the event with this id and this `recorded` instant."""
        return self.head + json.dumps(audit_id) + self.middle + json.dumps(fhir_instant(recorded_at)) + self.tail

    @property
    def size(self) -> int:
        return len(self.head) + len(self.middle) + len(self.tail)
