"""What Peerway did not keep as sent of a PeerContact Encounter a peer's app posted or put, said as
OperationOutcome warning issues rather than changed silently.

The comparison is between what the app sent and the Encounter Peerway answers (and writes to the EHR): the
contact names the peer who records it (from their token), its class follows its kind, its identifier is
Peerway's own, and elements the profile has no place for are not stored. The diagnostics name elements and
Peerway's own values only, never a value the app sent: they also travel in an HTTP header.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import fhir_profiles

# Elements Peerway reads from a posted contact (the rest is not stored) or sets itself.
READ = frozenset({"resourceType", "id", "meta", "identifier", "status", "class", "type", "subject", "period", "length"})
SET = frozenset({"participant", "partOf"})
PROFILE = fhir_profiles.PEER_CONTACT_PROFILE


@dataclass(frozen=True)
class Change:
    """One element not kept as sent: an OperationOutcome issue of severity warning."""

    expression: str
    code: str  # http://hl7.org/fhir/issue-type
    diagnostics: str


def _references(values: Any, key: str) -> list[Any]:
    return [v.get(key) if isinstance(v, dict) else None for v in values] if isinstance(values, list) else []


def _identifier_changes(sent: Any, answer: dict[str, Any]) -> list[Change]:
    ours = answer["identifier"][0]
    kept = f"{ours['system']}|{ours['value']}"
    changes: list[Change] = []
    first = True
    for index, identifier in enumerate(sent if isinstance(sent, list) else []):
        where = f"Encounter.identifier[{index}]"
        usable = isinstance(identifier, dict) and identifier.get("system") and identifier.get("value")
        if usable and first:
            first = False
            said = (
                f"{where} is kept as the app's identifier (a retry or If-None-Exist with it answers this contact), "
                f"but not written in the Encounter: Peerway names the contact {kept}"
            )
            changes.append(Change(where, "informational", said))
        elif identifier != ours:
            changes.append(Change(where, "not-supported", f"{where} is not kept: a contact keeps one app identifier"))
    return changes


def _participant_changes(sent: Any, answer: dict[str, Any]) -> list[Change]:
    peer = answer["participant"][0]
    reference = peer["individual"]["reference"]
    changes: list[Change] = []
    for index, participant in enumerate(sent if isinstance(sent, list) else []):
        where = f"Encounter.participant[{index}]"
        individual = participant.get("individual") if isinstance(participant, dict) else None
        named = individual.get("reference") if isinstance(individual, dict) else None
        if named != reference:
            said = (
                f"{where} is not kept: a contact names only the peer who records it ({reference}, from the token),"
                " never another person"
            )
            changes.append(Change(where, "business-rule", said))
        elif participant.get("type") != peer["type"]:
            said = f"{where}.type is replaced: the recording peer takes part as PPRF (primary performer)"
            changes.append(Change(f"{where}.type", "business-rule", said))
    return changes


def contact_changes(sent: dict[str, Any], answer: dict[str, Any]) -> tuple[Change, ...]:
    """The warnings for a contact `sent` by the app and stored as `answer` (Peerway's view of it)."""
    changes = _identifier_changes(sent.get("identifier"), answer)
    changes += _participant_changes(sent.get("participant"), answer)
    if "id" in sent and sent["id"] != answer["id"]:
        changes.append(Change("Encounter.id", "informational", f"Encounter.id is the server's: {answer['id']}"))
    sent_class = sent.get("class")
    ours = answer["class"]
    if isinstance(sent_class, dict) and (sent_class.get("system"), sent_class.get("code")) != (
        ours["system"],
        ours["code"],
    ):
        said = f"Encounter.class follows the contact's kind: {ours['code']} ({ours['system']})"
        changes.append(Change("Encounter.class", "business-rule", said))
    kind_system = fhir_profiles.PEER_CONTACT_KIND_SYSTEM
    for index, concept in enumerate(sent.get("type") or []):
        codings = concept.get("coding") if isinstance(concept, dict) else None
        others = [c for c in codings or [] if not isinstance(c, dict) or c.get("system") != kind_system]
        if others or (isinstance(concept, dict) and set(concept) - {"coding"}):
            said = f"Encounter.type[{index}]: only the code of {kind_system} is kept"
            changes.append(Change(f"Encounter.type[{index}]", "not-supported", said))
    subject = sent.get("subject")
    if isinstance(subject, dict) and set(subject) - {"reference"}:
        said = "Encounter.subject: only the reference is kept (Peerway's own client id)"
        changes.append(Change("Encounter.subject", "not-supported", said))
    meta = sent.get("meta")
    if isinstance(meta, dict) and (set(meta) - {"profile"} or set(meta.get("profile") or []) - {PROFILE}):
        said = f"Encounter.meta: only the profile {PROFILE} is kept"
        changes.append(Change("Encounter.meta", "not-supported", said))
    if "partOf" in sent and sent["partOf"] != answer.get("partOf"):
        said = "Encounter.partOf is set by Peerway: the client's hospital stay"
        changes.append(Change("Encounter.partOf", "business-rule", said))
    for element in sorted(set(sent) - READ - SET):
        said = f"Encounter.{element} is not kept: a PeerContact has no place for it"
        changes.append(Change(f"Encounter.{element}", "not-supported", said))
    return tuple(changes)


def outcome(summary: str, changes: tuple[Change, ...]) -> dict[str, Any]:
    """The OperationOutcome of a write: what happened (information), then each change (warning)."""
    issues: list[dict[str, Any]] = [{"severity": "information", "code": "informational", "diagnostics": summary}]
    issues += [
        {"severity": "warning", "code": c.code, "diagnostics": c.diagnostics, "expression": [c.expression]}
        for c in changes
    ]
    return {"resourceType": "OperationOutcome", "issue": issues}


def warning_header(changes: tuple[Change, ...]) -> str:
    """The changes as one HTTP Warning header (RFC 7234 5.5, code 199 "miscellaneous warning")."""
    return ", ".join(f'199 peerway "{c.diagnostics.replace(chr(34), chr(39))}"' for c in changes)
