"""evaluate(consents, request) -> Decision: the one place Peerway decides what a client's consent allows.

Pure and total: no I/O, and any input that type-checks yields a Decision (an internal fault denies the
item). The rules are written out, with examples, in consent/README.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from itertools import groupby
from typing import NamedTuple

from consent.categories import (
    CATEGORY_SYSTEM,
    EXPLICIT_ONLY,
    PATIENT_PRIVACY,
    PURPOSE_PARENTS,
    RESOURCE_TYPES_SYSTEM,
    RESTRICTIVE,
    DataCategory,
    category_coding,
    confidentiality_rank,
    label_name,
)
from consent.coding import Coding
from consent.model import (
    AccessRequest,
    ActorRule,
    ConsentRecord,
    Decision,
    ItemDecision,
    Period,
    Provision,
    RequestedItem,
    as_aware,
)

__all__ = ["evaluate"]

_OLDEST = datetime.min.replace(tzinfo=UTC)
_CATEGORY_VALUES = frozenset(c.value for c in DataCategory)
_DENY_ALL = Provision(type=None)  # an active consent without provisions permits nothing

# Outcome ranks: among matching sibling provisions a deny beats a permit, and a permit that covers the
# item beats one that matches but does not cover it (restricted labels, explicit-only categories).
_UNCOVERED, _PERMIT, _DENY = 0, 1, 2


class _Outcome(NamedTuple):
    rank: int
    path: tuple[int, ...]
    provision: Provision
    gap: str = ""  # why a matching permit does not cover the item


class _Item(NamedTuple):
    """A requested item with what every provision check needs computed once."""

    item: RequestedItem
    category: DataCategory
    coding: Coding
    restrictive: frozenset[Coding]


def evaluate(consents: Sequence[ConsentRecord], request: AccessRequest) -> Decision:
    """Decide, item by item, what `request` may see under the client's `consents`.

    Deny by default: an item is permitted only when the newest active patient-privacy consent about
    `request.patient` that applies to it permits it. Never raises; a fault inside the engine denies.
    """
    try:
        groups, refusals = _usable(consents, request)
    except Exception as exc:  # evaluate is total: a fault denies everything
        reason = f"not permitted: the consents could not be read ({type(exc).__name__})"
        return Decision(items=tuple(ItemDecision(i, False, None, None, reason) for i in request.items))
    return Decision(items=tuple(_decide_safely(item, groups, refusals, request) for item in request.items))


def _usable(consents: Sequence[ConsentRecord], request: AccessRequest) -> tuple[list[list[ConsentRecord]], list[str]]:
    """Active patient-privacy consents about the patient, newest first, grouped by (date_time, id)."""
    usable: list[ConsentRecord] = []
    refusals: list[str] = []
    for consent in consents:
        if consent.status != "active":
            refusals.append(f"{_name(consent)} is {consent.status or 'without status'}")
        elif consent.scope != PATIENT_PRIVACY:
            refusals.append(f"{_name(consent)} has scope {consent.scope or 'none'}, not {PATIENT_PRIVACY}")
        elif consent.patient is None or consent.patient != request.patient:
            refusals.append(f"{_name(consent)} is about {consent.patient or 'no patient'}")
        else:
            usable.append(consent)
    usable.sort(key=_recency, reverse=True)
    return [list(group) for _, group in groupby(usable, key=_recency)], refusals


def _recency(consent: ConsentRecord) -> tuple[datetime, str]:
    # Ties on date_time go to the greater id; a consent without date_time counts as the oldest.
    when = _OLDEST if consent.date_time is None else as_aware(consent.date_time)
    return when, consent.id


def _decide_safely(
    item: RequestedItem, groups: list[list[ConsentRecord]], refusals: list[str], request: AccessRequest
) -> ItemDecision:
    try:
        return _decide(item, groups, refusals, request)
    except Exception as exc:  # evaluate is total: a fault denies the item
        reason = f"not permitted: the consent engine failed on this item ({type(exc).__name__})"
        return ItemDecision(item, False, None, None, reason)


def _decide(
    item: RequestedItem, groups: list[list[ConsentRecord]], refusals: list[str], request: AccessRequest
) -> ItemDecision:
    category = _category(item.category)
    if category is None:
        return _refuse(item, f"unknown data category {item.category!r}")
    if not groups:
        why = f" ({'; '.join(refusals)})" if refusals else ""
        return _refuse(item, f"no active patient-privacy consent for {request.patient}{why}")
    ctx = _Item(item, category, category_coding(category), item.security_labels & RESTRICTIVE)
    misses: list[str] = []
    for group in groups:
        decided: tuple[ConsentRecord, _Outcome] | None = None
        for consent in group:
            root = consent.provision or _DENY_ALL
            miss = _mismatch(root, ctx, request)
            if miss is not None:
                misses.append(f"{_name(consent)} {_explain_miss(miss, ctx, request)}")
                continue
            outcome = _outcome(root, (), ctx, request)
            if decided is None or outcome.rank > decided[1].rank:
                decided = (consent, outcome)
        if decided is not None:
            return _item_decision(decided[0], decided[1], ctx, request)
    shown = "; ".join(misses[:3]) + ("; ..." if len(misses) > 3 else "")
    return _refuse(item, f"no active consent covers {category.value} ({shown})")


def _refuse(item: RequestedItem, why: str) -> ItemDecision:
    return ItemDecision(item, False, None, None, f"not permitted: {why}")


def _category(value: object) -> DataCategory | None:
    if isinstance(value, DataCategory):
        return value
    if isinstance(value, str) and value in _CATEGORY_VALUES:
        return DataCategory(value)
    return None


def _outcome(provision: Provision, path: tuple[int, ...], ctx: _Item, request: AccessRequest) -> _Outcome:
    """The decision of a provision that matches: its deepest matching exception, else its own type."""
    best: _Outcome | None = None
    for index, child in enumerate(provision.provisions):
        if _mismatch(child, ctx, request) is not None:
            continue
        outcome = _outcome(child, (*path, index), ctx, request)
        if best is None or outcome.rank > best.rank:
            best = outcome
            if best.rank == _DENY:
                break
    if best is not None:
        return best
    if provision.type != "permit":
        return _Outcome(_DENY, path, provision)
    gap = _coverage_gap(provision, ctx)
    return _Outcome(_PERMIT if gap is None else _UNCOVERED, path, provision, gap or "")


# --- matching ------------------------------------------------------------------------------------
# A provision matches an item when every element it sets admits the item. Where the item does not say
# (no date, no reference, no resource type) or the provision uses codes Peerway cannot read, a permit
# does not match and a deny does: unknowns never widen what is shared.


def _mismatch(provision: Provision, ctx: _Item, request: AccessRequest) -> str | None:
    """None when `provision` matches; otherwise the name of the first element that does not."""
    permit = provision.type == "permit"
    item, labels = ctx.item, provision.security_labels
    if provision.period is not None and not provision.period.contains(request.at):
        return "period"
    if provision.actors and not _actors_match(provision.actors, request, permit):
        return "actor"
    if provision.actions and request.action not in provision.actions:
        return "action"
    if provision.purposes and not _purpose_matches(request.purpose, provision.purposes, permit):
        return "purpose"
    if provision.classes and not _classes_match(provision.classes, item.resource_types, permit):
        return "class"
    if provision.codes and not _codes_match(provision.codes, ctx.coding, permit):
        return "code"
    if labels and not _labels_match(labels, item.security_labels, permit):
        return "securityLabel"
    if provision.data_period is not None and not _in_period(provision.data_period, item.data_date, permit):
        return "dataPeriod"
    if provision.data_refs and not _listed(provision.data_refs, item.reference, permit):
        return "data"
    return None


def _actors_match(rules: tuple[ActorRule, ...], request: AccessRequest, permit: bool) -> bool:
    for rule in rules:
        if rule.reference is not None:
            # A permit also needs the role it names; a deny of that party holds in any role.
            if rule.reference == request.actor_reference and (
                not permit or rule.role is None or rule.role in request.actor_roles
            ):
                return True
        elif rule.role is not None:
            if rule.role in request.actor_roles:
                return True
        elif not permit:  # a rule naming no one
            return True
    return False


def _purpose_matches(purpose: Coding, purposes: tuple[Coding, ...], permit: bool) -> bool:
    if purpose in purposes:
        return True
    if permit:
        # A permit must name the purpose itself: consenting "for treatment" is not read as consenting to
        # a peer supporter's coordination of care. A deny of the broader purpose does catch the narrower.
        return False
    current = PURPOSE_PARENTS.get(purpose)
    for _ in range(8):  # the known hierarchy is shallow; the bound keeps a bad table from looping
        if current is None:
            return False
        if current in purposes:
            return True
        current = PURPOSE_PARENTS.get(current)
    return False


def _classes_match(classes: tuple[Coding, ...], resource_types: frozenset[str], permit: bool) -> bool:
    if permit:
        allowed = {c.code for c in classes if c.system == RESOURCE_TYPES_SYSTEM}
        return bool(resource_types) and resource_types <= allowed
    if not resource_types:
        return True
    return any(c.system != RESOURCE_TYPES_SYSTEM or c.code in resource_types for c in classes)


def _codes_match(codes: tuple[Coding, ...], coding: Coding, permit: bool) -> bool:
    if coding in codes:
        return True
    return not permit and any(c.system != CATEGORY_SYSTEM for c in codes)


def _labels_match(labels: tuple[Coding, ...], carried: frozenset[Coding], permit: bool) -> bool:
    if not carried.isdisjoint(labels):
        return True
    if permit:
        return False
    # A deny of a confidentiality level also catches data held at a stricter level (R catches V).
    floors = [r for r in map(confidentiality_rank, labels) if r is not None]
    if not floors:
        return False
    floor = min(floors)
    return any((rank := confidentiality_rank(c)) is not None and rank >= floor for c in carried)


def _in_period(period: Period, when: datetime | None, permit: bool) -> bool:
    return not permit if when is None else period.contains(when)


def _listed(refs: tuple[str, ...], reference: str | None, permit: bool) -> bool:
    return not permit if reference is None else reference in refs


def _coverage_gap(provision: Provision, ctx: _Item) -> str | None:
    """Why a matching permit still may not release the item, or None when it may."""
    if ctx.category in EXPLICIT_ONLY and ctx.coding not in provision.codes:
        return f"{ctx.category.value} is shared only under a permit that names it"
    missing = sorted(ctx.restrictive.difference(provision.security_labels), key=str)
    if missing:
        names = ", ".join(label_name(label) for label in missing)
        return f"data labelled {names} is shared only under a permit that names each label"
    return None


# --- reasons -------------------------------------------------------------------------------------


def _name(consent: ConsentRecord) -> str:
    return f"Consent/{consent.id}" if consent.id else "Consent (no id)"


def _path(path: tuple[int, ...]) -> str:
    return "provision" + "".join(f".provision[{i}]" for i in path)


def _item_decision(consent: ConsentRecord, outcome: _Outcome, ctx: _Item, request: AccessRequest) -> ItemDecision:
    path = _path(outcome.path)
    where = f"{_name(consent)} {path}"
    actor = request.actor_reference
    if outcome.rank == _PERMIT:
        labels = sorted(ctx.restrictive, key=str)
        what = ctx.category.value + (f" ({', '.join(map(label_name, labels))})" if labels else "")
        reason = f"{where} permits {what} to {actor} for {request.purpose.code}"
    elif outcome.rank == _UNCOVERED:
        reason = f"not permitted: {where} applies, but {outcome.gap}"
    else:
        reason = f"{where} denies {_denied_what(outcome, ctx)} to {actor}"
    return ItemDecision(ctx.item, outcome.rank == _PERMIT, consent.id, path, reason)


def _denied_what(outcome: _Outcome, ctx: _Item) -> str:
    labels = outcome.provision.security_labels
    if labels:
        matched = [c for c in ctx.item.security_labels if _labels_match(labels, frozenset({c}), permit=False)]
        return ", ".join(label_name(c) for c in sorted(matched, key=str)) + " data"
    return ctx.category.value


def _explain_miss(element: str, ctx: _Item, request: AccessRequest) -> str:
    match element:
        case "period":
            return f"is not in force at {as_aware(request.at).isoformat()}"
        case "actor":
            return f"is not addressed to {request.actor_reference}"
        case "action":
            return f"does not cover the action {request.action.code}"
        case "purpose":
            return f"does not cover the purpose {request.purpose.code}"
        case "class":
            return "covers other kinds of record"
        case "code":
            return f"does not name {ctx.category.value}"
        case "securityLabel":
            return "covers only data with other security labels"
        case "dataPeriod":
            return "covers data from another period, or the item has no date"
        case _:
            return "covers other records, or the item names no record"
