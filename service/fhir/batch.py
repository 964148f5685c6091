"""FHIR batch interaction for write-back: many PUTs in one request, and what the EHR answered to each.

A batch (FHIR R4 http.html#transaction, Bundle.type "batch") is not atomic: the EHR processes each entry on its
own and answers a "batch-response" Bundle with one entry per request entry, in the same order, each carrying
`response.status` (an HTTP status code, optionally followed by its text: "201 Created") and, on failure, an
OperationOutcome in `response.outcome`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

__all__ = ["EntryAnswer", "batch_answers", "put_batch", "reference_of"]


def put_batch(resources: Sequence[dict[str, Any]], base_url: str) -> dict[str, Any]:
    """A batch Bundle that PUTs each resource at its own id ([type]/[id]: an update, or a create at that id);
    each entry's fullUrl is where the resource is at the server of `base_url`."""
    return {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {
                "fullUrl": f"{base_url}/{_at_own_id(resource)}",
                "resource": resource,
                "request": {"method": "PUT", "url": _at_own_id(resource)},
            }
            for resource in resources
        ],
    }


def _at_own_id(resource: dict[str, Any]) -> str:
    return f"{resource['resourceType']}/{quote(str(resource['id']), safe='')}"


def reference_of(resource: dict[str, Any]) -> str:
    """ "Type/id" of a resource, as batch_answers is asked for it."""
    return f"{resource['resourceType']}/{resource['id']}"


@dataclass(frozen=True)
class EntryAnswer:
    """What the EHR answered to one entry of a batch: its HTTP status, and its OperationOutcome if it sent one."""

    status: int
    outcome: dict[str, Any] | None = None

    @property
    def written(self) -> bool:
        return 200 <= self.status < 300


def batch_answers(answer: object, asked: Sequence[str]) -> list[EntryAnswer] | None:
    """The answers to a batch that PUT the resources `asked` ("Type/id" each), in request order; None when `answer`
    is not a batch-response with exactly one readable answer per entry, or an entry written names another
    resource than the one asked at its place (a server answering out of order): then nothing about any entry can
    be known from it."""
    if not isinstance(answer, dict) or answer.get("resourceType") != "Bundle":
        return None
    if answer.get("type") != "batch-response":
        return None
    entries = answer.get("entry")
    if not isinstance(entries, list) or len(entries) != len(asked):
        return None
    answers = []
    for entry, reference in zip(entries, asked, strict=True):
        response = entry.get("response") if isinstance(entry, dict) else None
        status = _status_code(response.get("status")) if isinstance(response, dict) else None
        if status is None:
            return None
        assert isinstance(response, dict)
        answered = EntryAnswer(status, _outcome(response.get("outcome") or entry.get("resource")))
        if answered.written and not _names(entry, response, reference):
            return None
        answers.append(answered)
    return answers


def _outcome(value: object) -> dict[str, Any] | None:
    """The OperationOutcome, from response.outcome or, as some servers send it, the entry's resource."""
    return value if isinstance(value, dict) and value.get("resourceType") == "OperationOutcome" else None


def _names(entry: dict[str, Any], response: dict[str, Any], reference: str) -> bool:
    """Whether what a written entry says it wrote (its location, its resource) is `reference`, where it says."""
    location = response.get("location")
    if isinstance(location, str) and location:
        path = location.split("?", 1)[0].split("/_history/", 1)[0].rstrip("/")
        if "/".join(unquote(part) for part in path.split("/")[-2:]) != reference:
            return False
    resource = entry.get("resource")
    if isinstance(resource, dict) and resource.get("resourceType") not in (None, "OperationOutcome"):
        return f"{resource.get('resourceType')}/{resource.get('id')}" == reference
    return True


def _status_code(status: object) -> int | None:
    """The code of a Bundle.entry.response.status ("201", "201 Created"); None for anything else."""
    if not isinstance(status, str):
        return None
    code = status.strip().split(" ", 1)[0]
    if len(code) != 3 or not code.isdigit() or not "100" <= code <= "599":
        return None
    return int(code)
