"""evaluate(consents, request) -> Decision: the one place Peerway decides what a client's consent allows.

Pure and total: no I/O, and any input that type-checks yields a Decision (an internal fault denies the
item). The rules are written out, with examples, in consent/README.md; the section numbers below are its.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import NamedTuple

from consent.categories import (
    CATEGORY_SYSTEM,
    EXPLICIT_ONLY,
    PATIENT_PRIVACY,
    PURPOSE_PARENTS,
    RESOURCE_TYPE_SYSTEMS,
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
    Identifier,
    ItemDecision,
    Provision,
    RequestedItem,
    as_aware,
)

__all__ = ["current_versions", "evaluate"]

_OLDEST = datetime.min.replace(tzinfo=UTC)
_CATEGORY_VALUES = frozenset(c.value for c in DataCategory)
_DENY_ALL = Provision(type=None)  # an active consent without provisions permits nothing

# What a provision's subtree makes of an item (rule 3). Siblings, and consents of the same date, combine
# by rank: a denial beats a release, which beats a permit that releases nothing.
_WITHHELD, _RELEASED, _DENIED = 0, 1, 2


class _Outcome(NamedTuple):
    rank: int
    path: tuple[int, ...]
    why: str = ""  # why a permit releases nothing (for _DENIED: the exception that released nothing)
    denied_labels: tuple[Coding, ...] = ()  # for _DENIED: the security labels the deny names


class _Item(NamedTuple):
    """A requested item with what every provision check needs computed once."""

    item: RequestedItem
    category: DataCategory
    coding: Coding
    restrictive: frozenset[Coding]


def evaluate(consents: Sequence[ConsentRecord], request: AccessRequest) -> Decision:
    """Decide, item by item, what `request` may see under the client's `consents`.

    Deny by default: an item is released only by the newest active patient-privacy consent about
    `request.patient` that applies to it, along a path of provisions that each are shown to match.
    Never raises; a fault inside the engine denies.
    """
    try:
        groups, refusals = _usable(consents, request)
    except Exception as exc:  # evaluate is total: a fault denies everything
        reason = f"not permitted: the consents could not be read ({type(exc).__name__})"
        return Decision(items=tuple(ItemDecision(i, False, None, None, reason) for i in request.items))
    return Decision(items=tuple(_decide_safely(item, groups, refusals, request) for item in request.items))


def unchanged_until(consents: Sequence[ConsentRecord], at: datetime) -> datetime | None:
    """The first moment at or after `at` from which evaluate over `consents` may decide differently for a request
    that differs only in its time: the beginning or end of a provision's period, at any depth. Before it, every
    decision made at `at` holds (a caller may keep it); None when no period lies ahead. `at` itself is returned
    when a period ends exactly then (an end is inclusive: the next moment differs), so nothing is kept."""
    moment = as_aware(at)
    ahead: list[datetime] = []
    for consent in consents:
        stack = [consent.provision] if consent.provision is not None else []
        while stack:
            provision = stack.pop()
            stack += provision.provisions
            period = provision.period
            if period is None:
                continue
            ahead += [as_aware(b) for b in (period.start, period.end) if b is not None and as_aware(b) >= moment]
    return min(ahead, default=None)


# --- which consents take part (rules 1 and 6) ------------------------------------------------------


def _usable(consents: Sequence[ConsentRecord], request: AccessRequest) -> tuple[list[list[ConsentRecord]], list[str]]:
    """The current versions of active patient-privacy consents about the patient, newest `date_time`
    first, in groups of equal `date_time` (each group sorted by id, for stable reasons only)."""
    current, refusals = _current_versions(consents)
    usable: list[ConsentRecord] = []
    for consent in current:
        if consent.status != "active":
            refusals.append(_set_aside(consent))
        elif consent.scope != PATIENT_PRIVACY:
            refusals.append(f"{_name(consent)} has scope {consent.scope or 'none'}, not {PATIENT_PRIVACY}")
        elif consent.patient is None or consent.patient != request.patient:
            refusals.append(f"{_name(consent)} is about {consent.patient or 'no patient'}")
        else:
            usable.append(consent)
    groups: dict[datetime, list[ConsentRecord]] = {}
    for consent in usable:
        groups.setdefault(_signed(consent), []).append(consent)
    return [sorted(groups[when], key=lambda c: c.id) for when in sorted(groups, reverse=True)], refusals


def _set_aside(consent: ConsentRecord) -> str:
    return f"{_name(consent)} is {consent.status or 'without status'}"


def _signed(consent: ConsentRecord) -> datetime:
    return _OLDEST if consent.date_time is None else as_aware(consent.date_time)


def _version(consent: ConsentRecord) -> tuple[datetime, datetime]:
    recorded = _OLDEST if consent.recorded_at is None else as_aware(consent.recorded_at)
    return _signed(consent), recorded


def current_versions(consents: Sequence[ConsentRecord]) -> list[ConsentRecord]:
    """The consents that take part by rule 6 (the newest version of each agreement; a withdrawn one drops out)."""
    return _current_versions(consents)[0]


def _current_versions(consents: Sequence[ConsentRecord]) -> tuple[list[ConsentRecord], list[str]]:
    """Rule 6: consents sharing an identifier are versions of one agreement; only its newest takes part.

    Newest is the latest (date_time, recorded_at). Several versions tied for newest all take part, unless
    one of them is not active: then the agreement is withdrawn.
    """
    agreements = _agreements(consents)
    current: list[ConsentRecord] = []
    refusals: list[str] = []
    for members in agreements:
        if len(members) == 1:
            current.extend(members)
            continue
        newest = max(_version(c) for c in members)
        latest = [c for c in members if _version(c) == newest]
        names = ", ".join(sorted({_name(c) for c in latest}))
        shared = _shared_identifier(members)
        for consent in members:
            if _version(consent) != newest:
                refusals.append(f"{_name(consent)} is replaced by {names} (same identifier {shared})")
        withdrawn = [c for c in latest if c.status != "active"]
        if withdrawn:
            for consent in latest:
                if consent.status == "active":
                    why = _set_aside(withdrawn[0])
                    refusals.append(f"{_name(consent)} is withdrawn: {why} (same identifier {shared})")
                else:
                    refusals.append(_set_aside(consent))
        else:
            current.extend(latest)
    return current, refusals


def _agreements(consents: Sequence[ConsentRecord]) -> list[list[ConsentRecord]]:
    """Consents grouped so that any two sharing an identifier (directly or through others) are together."""
    groups: list[tuple[set[Identifier], list[ConsentRecord]]] = []
    for consent in consents:
        identifiers = set(consent.identifiers)
        joined = [g for g in groups if identifiers and not identifiers.isdisjoint(g[0])]
        merged: tuple[set[Identifier], list[ConsentRecord]] = (identifiers, [consent])
        for group in joined:
            merged[0].update(group[0])
            merged[1].extend(group[1])
            groups.remove(group)
        groups.append(merged)
    return [sorted(members, key=lambda c: c.id) for _, members in groups]


def _shared_identifier(members: list[ConsentRecord]) -> str:
    """The agreement's identifiers, for reasons."""
    return ", ".join(sorted({str(i) for consent in members for i in consent.identifiers}))


# --- one item -------------------------------------------------------------------------------------


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
    for group in groups:  # rule 5: newest first; the first date at which a consent applies decides
        decided: tuple[ConsentRecord, _Outcome] | None = None
        for consent in group:
            root = consent.provision or _DENY_ALL
            excluded = _excluded_by(root, ctx, request)
            if excluded is not None:
                misses.append(f"{_name(consent)} {_explain_exclusion(excluded, ctx, request)}")
                continue
            outcome = _outcome(root, (), None, ctx, request)
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


def _outcome(
    provision: Provision,
    path: tuple[int, ...],
    unshown: tuple[tuple[int, ...], str] | None,
    ctx: _Item,
    request: AccessRequest,
) -> _Outcome:
    """Rule 3: what a provision that may apply makes of the item.

    `unshown` is the first provision on the path from the root (and its element) that may apply without
    being shown to: no permit at or below it releases anything.
    """
    if unshown is None:
        element = _unshown_by(provision, ctx, request)
        if element is not None:
            unshown = (path, element)
    best: _Outcome | None = None
    for index, child in enumerate(provision.provisions):
        if _excluded_by(child, ctx, request) is not None:
            continue
        outcome = _outcome(child, (*path, index), unshown, ctx, request)
        if best is None or outcome.rank > best.rank:
            best = outcome
            if best.rank == _DENIED:
                return best
    if best is not None and best.rank == _RELEASED:
        return best
    if provision.type != "permit":
        # A permit under this deny that releases nothing says why, so the coordinator sees the whole path.
        why = f"{_path(best.path)} permits, but {best.why}" if best is not None else ""
        return _Outcome(_DENIED, path, why, provision.security_labels)
    if unshown is not None:
        why = _explain_unshown(unshown, ctx, request)
        return best or _Outcome(_WITHHELD, path, why)
    gap = _coverage_gap(provision, ctx)
    if gap is not None:
        return best or _Outcome(_WITHHELD, path, gap)
    return _Outcome(_RELEASED, path)


# --- matching (rule 2) ----------------------------------------------------------------------------
# Each element a provision sets is read two ways. "Shown": the request and item are known to satisfy it.
# "Possible": nothing known rules them out (what the item does not say, and codes Peerway cannot read,
# count as possible). Only shown paths release; every possible deny applies.


def _excluded_by(provision: Provision, ctx: _Item, request: AccessRequest) -> str | None:
    """The first element of `provision` known to rule the request out, or None when it may apply."""
    item = ctx.item
    if provision.period is not None and not provision.period.contains(request.at):
        return "period"
    if provision.actors and not any(_actor_possible(rule, request) for rule in provision.actors):
        return "actor"
    if provision.actions and request.action not in provision.actions:
        return "action"
    if provision.purposes and not _purpose_possible(request.purpose, provision.purposes):
        return "purpose"
    if provision.classes and not _classes_possible(provision.classes, item.resource_types):
        return "class"
    if provision.codes and not _codes_possible(provision.codes, ctx.coding):
        return "code"
    if provision.security_labels and not _labels_possible(provision.security_labels, item.security_labels):
        return "securityLabel"
    period, when = provision.data_period, item.data_date
    if period is not None and when is not None and not period.contains(when):
        return "dataPeriod"
    if provision.data_refs and item.reference is not None and item.reference not in provision.data_refs:
        return "data"
    return None


def _unshown_by(provision: Provision, ctx: _Item, request: AccessRequest) -> str | None:
    """For a provision that may apply: the first element not shown to admit the request, or None."""
    item = ctx.item
    if provision.actors and not any(_actor_shown(rule, request) for rule in provision.actors):
        return "actor"
    if provision.purposes and request.purpose not in provision.purposes:
        return "purpose"
    if provision.classes:
        named = {c.code for c in provision.classes if c.system in RESOURCE_TYPE_SYSTEMS}
        if not item.resource_types or not item.resource_types <= named:
            return "class"
    if provision.codes and ctx.coding not in provision.codes:
        return "code"
    if provision.security_labels and item.security_labels.isdisjoint(provision.security_labels):
        return "securityLabel"
    if provision.data_period is not None and item.data_date is None:
        return "dataPeriod"
    if provision.data_refs and item.reference is None:
        return "data"
    return None


def _actor_shown(rule: ActorRule, request: AccessRequest) -> bool:
    """The rule names the asker, in a role the asker holds when it names one."""
    if rule.reference is not None:
        return rule.reference == request.actor_reference and (rule.role is None or rule.role in request.actor_roles)
    return rule.role is not None and rule.role in request.actor_roles


def _actor_possible(rule: ActorRule, request: AccessRequest) -> bool:
    """The rule may be about the asker: the party named (in any role), a role held, or naming no one."""
    if rule.reference is not None:
        return rule.reference == request.actor_reference
    return rule.role is None or rule.role in request.actor_roles


def _purpose_possible(purpose: Coding, purposes: tuple[Coding, ...]) -> bool:
    """The purpose, or one it specialises (v3-ActReason: COC is a kind of TREAT), is listed."""
    current: Coding | None = purpose
    while current is not None:  # PURPOSE_PARENTS is a tree (tests/unit/consent/test_engine.py checks it)
        if current in purposes:
            return True
        current = PURPOSE_PARENTS.get(current)
    return False


def _classes_possible(classes: tuple[Coding, ...], resource_types: frozenset[str]) -> bool:
    if not resource_types:
        return True
    return any(c.system not in RESOURCE_TYPE_SYSTEMS or c.code in resource_types for c in classes)


def _codes_possible(codes: tuple[Coding, ...], coding: Coding) -> bool:
    # A code Peerway cannot read (another system, or not one of our categories) may name this category.
    return any(c == coding or c.system != CATEGORY_SYSTEM or c.code not in _CATEGORY_VALUES for c in codes)


def _labels_possible(labels: tuple[Coding, ...], carried: frozenset[Coding]) -> bool:
    if not carried.isdisjoint(labels):
        return True
    # A confidentiality level also reaches data held at a stricter level (R reaches V).
    floors = [rank for rank in map(confidentiality_rank, labels) if rank is not None]
    if not floors:
        return False
    floor = min(floors)
    return any((rank := confidentiality_rank(c)) is not None and rank >= floor for c in carried)


def _coverage_gap(provision: Provision, ctx: _Item) -> str | None:
    """Rule 4: why a permit that applies may still not release the item, or None when it may."""
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
    if outcome.rank == _RELEASED:
        labels = sorted(ctx.restrictive, key=str)
        what = ctx.category.value + (f" ({', '.join(map(label_name, labels))})" if labels else "")
        reason = f"{where} permits {what} to {actor} for {request.purpose.code}"
    elif outcome.rank == _WITHHELD:
        reason = f"not permitted: {where} applies, but {outcome.why}"
    else:
        reason = f"{where} denies {_denied_what(outcome, ctx)} to {actor}"
        if outcome.why:
            reason += f" ({outcome.why})"
    return ItemDecision(ctx.item, outcome.rank == _RELEASED, consent.id, path, reason)


def _denied_what(outcome: _Outcome, ctx: _Item) -> str:
    labels = outcome.denied_labels
    if labels:
        matched = [c for c in ctx.item.security_labels if _labels_possible(labels, frozenset({c}))]
        if matched:
            return ", ".join(label_name(c) for c in sorted(matched, key=str)) + " data"
    return ctx.category.value


def _explain_exclusion(element: str, ctx: _Item, request: AccessRequest) -> str:
    explanations = {
        "period": f"is not in force at {as_aware(request.at).isoformat()}",
        "actor": f"is not addressed to {request.actor_reference}",
        "action": f"does not cover the action {request.action.code}",
        "purpose": f"does not cover the purpose {request.purpose.code}",
        "class": "covers other kinds of record",
        "code": f"does not name {ctx.category.value}",
        "securityLabel": "covers only data with other security labels",
        "dataPeriod": "covers data from another period",
        "data": "covers other records",
    }
    return explanations[element]


def _explain_unshown(unshown: tuple[tuple[int, ...], str], ctx: _Item, request: AccessRequest) -> str:
    path, element = unshown
    details = {
        "actor": f"does not name {request.actor_reference} in a role it holds",
        "purpose": f"names a broader purpose than {request.purpose.code}",
        "class": "does not name every kind of record the item is",
        "code": f"names codes Peerway cannot read as {ctx.category.value}",
        "securityLabel": "names other security labels than the item carries",
        "dataPeriod": "limits the data's dates and the item has no date",
        "data": "lists records and the item names none",
    }
    return f"{_path(path)}.{element} {details[element]}, so it does not release data"
