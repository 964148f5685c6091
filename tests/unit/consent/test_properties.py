"""Properties of evaluate over generated consent trees and requests: nothing denied is ever disclosed."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import TypeVar

from hypothesis import given, settings
from hypothesis import strategies as st

from consent import (
    ACTION_ACCESS,
    ACTION_DISCLOSE,
    ASSIGNED_PEER_ROLE,
    EXPLICIT_ONLY,
    PURPOSE_COC,
    PURPOSE_TREAT,
    RESTRICTIVE,
    ROLE_IRCP,
    AccessRequest,
    ActorRule,
    Coding,
    ConsentRecord,
    DataCategory,
    Decision,
    Period,
    Provision,
    RequestedItem,
    evaluate,
)
from consent.categories import (
    ACT_CODE_SYSTEM,
    ACT_REASON_SYSTEM,
    CONFIDENTIALITY_SYSTEM,
    CONSENT_ACTION_SYSTEM,
    PARTICIPATION_TYPE_SYSTEM,
    PATIENT_PRIVACY,
    RESOURCE_TYPES_SYSTEM,
    category_coding,
)

T = TypeVar("T")
U = TypeVar("U")
PATIENT = "Patient/client-1"
CHECKS = settings(max_examples=300, deadline=None, database=None)

# Small pools, so generated provisions and requests meet often.
ACTORS = ["Practitioner/p1", "Practitioner/p2", "Organization/54"]
ROLES = [ASSIGNED_PEER_ROLE, ROLE_IRCP, Coding(PARTICIPATION_TYPE_SYSTEM, "AUT")]
ACTIONS = [ACTION_ACCESS, ACTION_DISCLOSE, Coding(CONSENT_ACTION_SYSTEM, "correct")]
PURPOSES = [PURPOSE_COC, PURPOSE_TREAT, Coding(ACT_REASON_SYSTEM, "HPAYMT")]
LABELS = [Coding(CONFIDENTIALITY_SYSTEM, c) for c in ("N", "R", "V")] + [
    Coding(ACT_CODE_SYSTEM, c) for c in ("MH", "SUD", "PSY")
]
TYPES = ["Appointment", "Goal", "Patient"]
CLASSES = [Coding(RESOURCE_TYPES_SYSTEM, t) for t in TYPES] + [Coding("http://loinc.org", "18776-5")]
CODES = [category_coding(c) for c in DataCategory] + [Coding("http://loinc.org", "11450-4")]
REFS = ["Goal/g1", "Goal/g2"]
MOMENTS = [
    datetime(2023, 6, 1, tzinfo=UTC),
    datetime(2024, 1, 1, tzinfo=UTC),
    datetime(2024, 1, 1, 5, tzinfo=timezone(timedelta(hours=5))),
    datetime(2024, 6, 1),  # naive: read as UTC
    datetime(2025, 1, 1, tzinfo=UTC),
]


def mostly(usual: st.SearchStrategy[T], rare: st.SearchStrategy[T], one_in: int = 6) -> st.SearchStrategy[T]:
    """`rare` about once in `one_in` draws, else `usual`: provisions set few elements, so some permit."""

    @st.composite
    def pick(draw: st.DrawFn) -> T:
        return draw(rare if draw(st.integers(1, one_in)) == one_in else usual)

    return pick()


def some(pool: list[U], most: int = 2) -> st.SearchStrategy[tuple[U, ...]]:
    return mostly(st.just(()), st.lists(st.sampled_from(pool), min_size=1, max_size=most).map(tuple))


moments = st.sampled_from(MOMENTS)
periods = mostly(st.none(), st.builds(Period, st.none() | moments, st.none() | moments))
actor_rules = st.builds(ActorRule, st.none() | st.sampled_from(ROLES), st.none() | st.sampled_from(ACTORS))


def provisions(depth: int) -> st.SearchStrategy[Provision]:
    children = st.just(()) if depth == 0 else st.lists(provisions(depth - 1), max_size=2).map(tuple)
    return st.builds(
        Provision,
        type=st.sampled_from(["permit", "permit", "deny", None]),
        period=periods,
        actors=mostly(st.just(()), st.lists(actor_rules, min_size=1, max_size=2).map(tuple)),
        actions=some(ACTIONS),
        purposes=some(PURPOSES),
        security_labels=some(LABELS, 3),
        classes=some(CLASSES),
        codes=some(CODES, 3),
        data_period=periods,
        data_refs=some(REFS),
        provisions=children,
    )


deny_leaves = provisions(0).map(lambda p: replace(p, type="deny"))
consents = st.builds(
    ConsentRecord,
    id=st.sampled_from(["a", "b", "c"]),
    status=mostly(st.just("active"), st.sampled_from(["inactive", "draft"]), 8),
    scope=mostly(st.just(PATIENT_PRIVACY), st.sampled_from(["research", None]), 8),
    patient=mostly(st.just(PATIENT), st.sampled_from(["Patient/other", None]), 8),
    date_time=st.none() | moments,
    provision=mostly(provisions(2), st.none(), 8),
)
consent_lists = st.lists(consents, min_size=1, max_size=3)
items = st.builds(
    RequestedItem,
    category=st.sampled_from(list(DataCategory)),
    security_labels=mostly(st.just(frozenset()), st.frozensets(st.sampled_from(LABELS), min_size=1, max_size=2)),
    resource_types=st.frozensets(st.sampled_from(TYPES), max_size=2),
    data_date=st.none() | moments,
    reference=st.none() | st.sampled_from(REFS),
)
requests = st.builds(
    AccessRequest,
    patient=st.just(PATIENT),
    actor_reference=st.sampled_from(ACTORS),
    actor_roles=st.frozensets(st.sampled_from(ROLES), max_size=3),
    purpose=st.sampled_from(PURPOSES),
    action=st.sampled_from(ACTIONS),
    items=st.lists(items, min_size=1, max_size=4).map(tuple),
    at=moments,
)


def permitted(decision: Decision) -> list[bool]:
    return [d.permitted for d in decision.items]


@CHECKS
@given(st.lists(consents, max_size=4), requests)
def test_evaluate_is_total_and_nothing_denied_is_reported_permitted(
    records: list[ConsentRecord], request: AccessRequest
) -> None:
    decision = evaluate(records, request)

    assert [d.item for d in decision.items] == list(request.items)
    for d in decision.items:
        assert "failed" not in d.reason, d.reason
        assert "could not be read" not in d.reason, d.reason
        assert d.reason
        same = [x.permitted for x in decision.items if x.item == d.item]
        assert decision.is_permitted(d.item) == all(same)
        if not d.permitted:
            assert not decision.is_permitted(d.item)
            assert d.item.category not in decision.permitted_categories()
    for category in decision.permitted_categories():
        assert any(d.permitted for d in decision.items if d.item.category == category)


def provision_at(record: ConsentRecord, path: str) -> Provision | None:
    node = record.provision or Provision(type=None)
    for index in map(int, re.findall(r"\[(\d+)\]", path)):
        if index >= len(node.provisions):
            return None  # another consent with the same id
        node = node.provisions[index]
    return node


@CHECKS
@given(consent_lists, requests)
def test_every_permit_is_a_permit_provision_that_names_what_it_must(
    records: list[ConsentRecord], request: AccessRequest
) -> None:
    for d in evaluate(records, request).items:
        if not d.permitted:
            continue
        assert d.provision_path is not None
        deciding = [
            r
            for r in records
            if r.id == d.consent_id and r.status == "active" and r.scope == PATIENT_PRIVACY and r.patient == PATIENT
        ]
        provisions_found = [provision_at(r, d.provision_path) for r in deciding]
        assert any(
            p is not None
            and p.type == "permit"
            and (d.item.security_labels & RESTRICTIVE) <= set(p.security_labels)
            and (d.item.category not in EXPLICIT_ONLY or category_coding(d.item.category) in p.codes)
            for p in provisions_found
        ), d


def insert(node: Provision, leaf: Provision, choices: list[int]) -> Provision:
    """`node` with `leaf` added as an exception at the position the choices pick."""
    if not choices or not node.provisions:
        return replace(node, provisions=(*node.provisions, leaf))
    index = choices[0] % (len(node.provisions) + 1)
    if index == len(node.provisions):
        return replace(node, provisions=(*node.provisions, leaf))
    child = insert(node.provisions[index], leaf, choices[1:])
    return replace(node, provisions=(*node.provisions[:index], child, *node.provisions[index + 1 :]))


def add_exception(node: Provision, indices: list[int], leaf: Provision) -> Provision:
    if not indices:
        return replace(node, provisions=(*node.provisions, leaf))
    head, rest = indices[0], indices[1:]
    child = add_exception(node.provisions[head], rest, leaf)
    return replace(node, provisions=(*node.provisions[:head], child, *node.provisions[head + 1 :]))


@CHECKS
@given(consent_lists, requests)
def test_a_deny_under_the_deciding_permit_withdraws_the_item(
    records: list[ConsentRecord], request: AccessRequest
) -> None:
    for d in evaluate(records, request).items:
        if not d.permitted or d.provision_path is None:
            continue
        indices = [int(i) for i in re.findall(r"\[(\d+)\]", d.provision_path)]
        changed = [
            replace(r, provision=add_exception(r.provision or Provision(None), indices, Provision("deny")))
            if r.id == d.consent_id and provision_at(r, d.provision_path) is not None
            else r
            for r in records
        ]
        again = evaluate(changed, replace(request, items=(d.item,))).items[0]
        assert not again.permitted, again


@CHECKS
@given(
    consent_lists,
    requests,
    deny_leaves,
    st.integers(min_value=0),
    st.lists(st.integers(min_value=0), max_size=3),
)
def test_adding_a_deny_provision_never_widens_what_is_permitted(
    records: list[ConsentRecord], request: AccessRequest, leaf: Provision, which: int, choices: list[int]
) -> None:
    target = which % len(records)
    root = records[target].provision or Provision(type=None)
    changed = [
        *records[:target],
        replace(records[target], provision=insert(root, leaf, choices)),
        *records[target + 1 :],
    ]

    before, after = permitted(evaluate(records, request)), permitted(evaluate(changed, request))

    assert all(b or not a for b, a in zip(before, after, strict=True))


@CHECKS
@given(consent_lists, requests, deny_leaves, st.none() | moments, st.sampled_from(["a", "b", "c"]))
def test_adding_a_deny_consent_never_widens_what_is_permitted(
    records: list[ConsentRecord], request: AccessRequest, leaf: Provision, when: datetime | None, id: str
) -> None:
    denial = ConsentRecord(id, "active", PATIENT_PRIVACY, PATIENT, when, leaf)

    before, after = permitted(evaluate(records, request)), permitted(evaluate([*records, denial], request))

    assert all(b or not a for b, a in zip(before, after, strict=True))


@CHECKS
@given(consent_lists, requests, st.sampled_from(["inactive", "rejected", "entered-in-error"]))
def test_withdrawing_every_consent_permits_nothing(
    records: list[ConsentRecord], request: AccessRequest, status: str
) -> None:
    withdrawn = [replace(r, status=status) for r in records]
    assert not any(permitted(evaluate(withdrawn, request)))


@CHECKS
@given(consent_lists, requests)
def test_the_order_consents_arrive_in_does_not_matter(records: list[ConsentRecord], request: AccessRequest) -> None:
    assert permitted(evaluate(records, request)) == permitted(evaluate(records[::-1], request))
