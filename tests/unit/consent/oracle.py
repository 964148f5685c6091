"""A second reading of consent/README.md, written apart from consent/engine.py, for differential tests.

It shares only the records (consent.model) with the engine. Every vocabulary it needs is written out here
from the standards (HL7 v3-Confidentiality, v3-ActCode sensitivity, v3-ActReason, FHIR resource types),
never taken from the engine's constants, so a change to one of those constants shows as a disagreement.
It answers only "released or not" per item; reasons are the engine's business.
"""

from __future__ import annotations

from datetime import UTC, datetime

from consent.model import AccessRequest, ConsentRecord, Provision, RequestedItem

PEERWAY_CATEGORIES = "https://peerway.github.io/fhir/CodeSystem/data-category"
CATEGORIES = frozenset(
    {
        "preferred-name",
        "contact-details",
        "admission-discharge",
        "upcoming-appointments",
        "recovery-goals",
        "interests",
        "safety-considerations",
        "community-supports",
        "diagnosis",
        "clinical-notes",
    }
)
NAMED_ONLY = frozenset({"diagnosis", "clinical-notes"})  # shared only under a permit whose code names them

CONFIDENTIALITY = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
TYPE_SYSTEMS = frozenset({"http://hl7.org/fhir/resource-types", "http://hl7.org/fhir/fhir-types"})

# v3-Confidentiality, least to most restricted.
LEVEL = {"U": 0, "L": 1, "M": 2, "N": 3, "R": 4, "V": 5}
# Labels a permit must name, one by one: the restricted levels and the sensitivity codes Peerway honours.
MUST_NAME = frozenset({(CONFIDENTIALITY, "R"), (CONFIDENTIALITY, "V")}) | frozenset(
    (ACT_CODE, code)
    for code in (
        "BH", "COGN", "DVD", "EMOTDIS", "ETH", "ETHUD", "GDIS", "HIV", "MH", "MST", "OPIOIDUD", "PREGNANT",
        "PSY", "PSYTHPN", "SCA", "SDV", "SEX", "SICKLE", "SOC", "SPI", "STD", "SUD", "TBOO", "VIO",
        "42CFRPart2", "HIPAAPsyNotes", "Title38Section7332",
    )
)  # fmt: skip
# v3-ActReason: the purposes each purpose is a kind of (COC and ETREAT are kinds of TREAT).
BROADER = {"COC": {"TREAT"}, "ETREAT": {"TREAT"}}

MIN = datetime.min.replace(tzinfo=UTC)


def utc(moment: datetime | None) -> datetime:
    if moment is None:
        return MIN
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def within(start: datetime | None, end: datetime | None, moment: datetime) -> bool:
    return (start is None or utc(start) <= utc(moment)) and (end is None or utc(moment) <= utc(end))


# --- one element, two readings: (is it possible?, is it shown?) ---------------------------------------


def element_readings(p: Provision, item: RequestedItem, ask: AccessRequest) -> list[tuple[bool, bool]]:
    """For each element `p` sets: whether nothing known rules the request out, and whether it is known to hold."""
    readings: list[tuple[bool, bool]] = []
    if p.period is not None:
        inside = within(p.period.start, p.period.end, ask.at)
        readings.append((inside, inside))
    if p.actors:
        possible = shown = False
        for rule in p.actors:
            if rule.reference is None and rule.role is None:
                possible = True
            elif rule.reference is None:
                holds = rule.role in ask.actor_roles
                possible, shown = possible or holds, shown or holds
            elif rule.reference == ask.actor_reference:
                possible = True
                shown = shown or rule.role is None or rule.role in ask.actor_roles
        readings.append((possible, shown))
    if p.actions:
        listed = ask.action in p.actions
        readings.append((listed, listed))
    if p.purposes:
        codes = {(c.system, c.code) for c in p.purposes}
        exact = (ask.purpose.system, ask.purpose.code) in codes
        broader = ask.purpose.system == ACT_REASON and any(
            (ACT_REASON, b) in codes for b in BROADER.get(ask.purpose.code, ())
        )
        readings.append((exact or broader, exact))
    if p.classes:
        typed = {c.code for c in p.classes if c.system in TYPE_SYSTEMS}
        foreign = any(c.system not in TYPE_SYSTEMS for c in p.classes)
        kinds = item.resource_types
        possible = not kinds or foreign or bool(kinds & typed)
        readings.append((possible, bool(kinds) and kinds <= typed))
    if p.codes:
        mine = any(c.system == PEERWAY_CATEGORIES and c.code == str(item.category) for c in p.codes)
        unreadable = any(c.system != PEERWAY_CATEGORIES or c.code not in CATEGORIES for c in p.codes)
        readings.append((mine or unreadable, mine))
    if p.security_labels:
        carried = {(c.system, c.code) for c in item.security_labels}
        named = {(c.system, c.code) for c in p.security_labels}
        common = bool(carried & named)
        floors = [LEVEL[code] for system, code in named if system == CONFIDENTIALITY and code in LEVEL]
        levels = [LEVEL[code] for system, code in carried if system == CONFIDENTIALITY and code in LEVEL]
        stricter = bool(floors) and any(level >= min(floors) for level in levels)
        readings.append((common or stricter, common))
    if p.data_period is not None:
        if item.data_date is None:
            readings.append((True, False))
        else:
            inside = within(p.data_period.start, p.data_period.end, item.data_date)
            readings.append((inside, inside))
    if p.data_refs:
        if item.reference is None:
            readings.append((True, False))
        else:
            listed = item.reference in p.data_refs
            readings.append((listed, listed))
    return readings


def possible(p: Provision, item: RequestedItem, ask: AccessRequest) -> bool:
    return all(may for may, _ in element_readings(p, item, ask))


def shown(p: Provision, item: RequestedItem, ask: AccessRequest) -> bool:
    return all(known for _, known in element_readings(p, item, ask))


def covers(p: Provision, item: RequestedItem) -> bool:
    named_labels = {(c.system, c.code) for c in p.security_labels}
    carried = {(c.system, c.code) for c in item.security_labels}
    if not (carried & MUST_NAME) <= named_labels:
        return False
    category = str(item.category)
    return category not in NAMED_ONLY or any(c.system == PEERWAY_CATEGORIES and c.code == category for c in p.codes)


# --- one consent ----------------------------------------------------------------------------------------


def verdict(p: Provision, path_shown: bool, item: RequestedItem, ask: AccessRequest) -> str:
    """'deny', 'release' or 'withheld' for a provision that may apply (rule 3)."""
    here = path_shown and shown(p, item, ask)
    below = [verdict(child, here, item, ask) for child in p.provisions if possible(child, item, ask)]
    if "deny" in below:
        return "deny"
    if "release" in below:
        return "release"
    if p.type != "permit":
        return "deny"
    return "release" if here and covers(p, item) else "withheld"


def consent_verdict(record: ConsentRecord, item: RequestedItem, ask: AccessRequest) -> str | None:
    """None when the consent does not apply to the item (its root is ruled out)."""
    root = record.provision if record.provision is not None else Provision(type=None)
    if not possible(root, item, ask):
        return None
    return verdict(root, True, item, ask)


# --- several consents -----------------------------------------------------------------------------------


def taking_part(records: list[ConsentRecord], ask: AccessRequest) -> list[ConsentRecord]:
    """Rules 1 and 6: the newest version of each agreement, when active, patient-privacy, about the patient."""
    remaining = list(range(len(records)))
    chosen: list[ConsentRecord] = []
    while remaining:
        # Everything linked to the first remaining record through shared identifiers.
        agreement = {remaining[0]}
        grew = True
        while grew:
            ids = {i for n in agreement for i in records[n].identifiers}
            more = {n for n in remaining if ids & set(records[n].identifiers)} - agreement
            grew = bool(more)
            agreement |= more
        remaining = [n for n in remaining if n not in agreement]
        versions = [records[n] for n in agreement]
        newest = max((utc(r.date_time), utc(r.recorded_at)) for r in versions)
        latest = [r for r in versions if (utc(r.date_time), utc(r.recorded_at)) == newest]
        if all(r.status == "active" for r in latest):
            chosen += latest
    return [r for r in chosen if r.scope == "patient-privacy" and r.patient == ask.patient]


def released(records: list[ConsentRecord], item: RequestedItem, ask: AccessRequest) -> bool:
    """Rule 5: the newest date at which some consent applies decides; at one date a deny wins."""
    if str(item.category) not in CATEGORIES:
        return False
    current = taking_part(records, ask)
    for when in sorted({utc(r.date_time) for r in current}, reverse=True):
        verdicts = [consent_verdict(r, item, ask) for r in current if utc(r.date_time) == when]
        verdicts = [v for v in verdicts if v is not None]
        if verdicts:
            return "deny" not in verdicts and "release" in verdicts
    return False


def release_paths(record: ConsentRecord, item: RequestedItem, ask: AccessRequest) -> list[list[Provision]]:
    """Every root-to-permit path whose provisions are each shown to match and whose permit covers the item."""
    found: list[list[Provision]] = []

    def walk(p: Provision, trail: list[Provision]) -> None:
        if not shown(p, item, ask) or not possible(p, item, ask):
            return
        trail = [*trail, p]
        if p.type == "permit" and covers(p, item):
            found.append(trail)
        for child in p.provisions:
            walk(child, trail)

    if record.provision is not None:
        walk(record.provision, [])
    return found
