"""Properties of evaluate over generated consent trees and requests, checked over whole paths.

Each property looks at every provision on the way to a decision, not only the deciding one: the engine must
agree with an independent reading of the rules (tests/unit/consent/oracle.py), every release must have a path
whose provisions each are shown to match, and narrowing a provision on that path must stop it releasing.
How many cases run is set by the hypothesis profile (tests/unit/consent/conftest.py): `make test` runs more
than 100,000 in all, `make test-deep` ten times as many.
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from random import Random
from typing import TypeVar

from hypothesis import given
from hypothesis import strategies as st

from consent import (
    ACTION_ACCESS,
    ACTION_DISCLOSE,
    ASSIGNED_PEER_ROLE,
    PURPOSE_COC,
    PURPOSE_TREAT,
    ROLE_IRCP,
    AccessRequest,
    ActorRule,
    Coding,
    ConsentRecord,
    DataCategory,
    Decision,
    Identifier,
    ItemDecision,
    Period,
    Provision,
    RequestedItem,
    evaluate,
    unchanged_until,
)
from consent.model import as_aware
from tests.unit.consent import oracle
from tests.unit.consent.conftest import weighted

T = TypeVar("T")
U = TypeVar("U")
PATIENT = "Patient/client-1"
PRIVACY = "patient-privacy"
CATEGORY = "https://peerway.github.io/fhir/CodeSystem/data-category"
PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
ACTION = "http://terminology.hl7.org/CodeSystem/consentaction"

# Small pools, so generated provisions and requests meet often.
ACTORS = ["Practitioner/p1", "Practitioner/p2", "Organization/54"]
ROLES = [ASSIGNED_PEER_ROLE, ROLE_IRCP, Coding(PARTICIPATION, "AUT")]
ACTIONS = [ACTION_ACCESS, ACTION_DISCLOSE, Coding(ACTION, "correct")]
PURPOSES = [PURPOSE_COC, PURPOSE_TREAT, Coding(oracle.ACT_REASON, "HPAYMT"), Coding(oracle.ACT_REASON, "ETREAT")]
LABELS = [Coding(oracle.CONFIDENTIALITY, c) for c in ("N", "R", "V")] + [
    Coding(oracle.ACT_CODE, c) for c in ("MH", "SUD", "PSY", "DEMO")
]
TYPES = ["Appointment", "Goal", "Patient"]
CLASSES = [
    Coding("http://hl7.org/fhir/resource-types", "Appointment"),
    Coding("http://hl7.org/fhir/resource-types", "Goal"),
    Coding("http://hl7.org/fhir/fhir-types", "Patient"),
    Coding("http://hl7.org/fhir/fhir-types", "Goal"),
    Coding("http://loinc.org", "18776-5"),
]
CODES = [Coding(CATEGORY, c.value) for c in DataCategory] + [
    Coding("http://loinc.org", "11450-4"),
    Coding(CATEGORY, "horoscope"),  # not one of ours: an unreadable code
]
REFS = ["Goal/g1", "Goal/g2"]
MOMENTS = [
    datetime(2023, 6, 1, tzinfo=UTC),
    datetime(2024, 1, 1, tzinfo=UTC),
    datetime(2024, 1, 1, 5, tzinfo=timezone(timedelta(hours=5))),  # the same instant as the one above
    datetime(2024, 1, 1, 3, tzinfo=timezone(timedelta(hours=5))),  # two hours earlier
    datetime(2024, 6, 1),  # naive: read as UTC
    datetime(2025, 1, 1, tzinfo=UTC),
]
IDENTIFIERS = [Identifier("urn:ehr:consent", "form-1"), Identifier("urn:ehr:consent", "form-2")]
IDS = ["a", "b", "c", "d"]


def mostly(usual: st.SearchStrategy[T], rare: st.SearchStrategy[T], one_in: int = 6) -> st.SearchStrategy[T]:
    """`rare` about once in `one_in` draws, else `usual`: provisions set few elements, so some permit."""
    return st.one_of(*([usual] * (one_in - 1)), rare)


def some(pool: list[U], most: int = 2, one_in: int = 6) -> st.SearchStrategy[tuple[U, ...]]:
    """Mostly the empty tuple, else one or `most` values of the pool (drawn from a list made once: cheap)."""
    combos: list[tuple[U, ...]] = [(v,) for v in pool]
    if most > 1:
        combos += [(a, b) for i, a in enumerate(pool) for b in pool[i + 1 :]]
    if most > 2:
        combos += [
            (a, b, c) for i, a in enumerate(pool) for j, b in enumerate(pool[i + 1 :], i + 1) for c in pool[j + 1 :]
        ]
    empties: list[tuple[U, ...]] = [()] * (len(combos) * (one_in - 1))
    return st.sampled_from(empties + combos)


def some_pairs(pool: list[U]) -> list[tuple[U, U]]:
    return [(a, b) for i, a in enumerate(pool) for b in pool[i + 1 :]]


MOMENT_OR_NONE = [None, *MOMENTS]
PERIODS = [None] * 5 * 7 * 7 + [Period(a, b) for a in MOMENT_OR_NONE for b in MOMENT_OR_NONE]
ACTOR_RULES = [ActorRule(role, ref) for role in [None, *ROLES] for ref in [None, *ACTORS]]

moments = st.sampled_from(MOMENTS)
periods = st.sampled_from(PERIODS)
actor_lists = some(ACTOR_RULES)


def provisions(depth: int) -> st.SearchStrategy[Provision]:
    children = st.just(()) if depth == 0 else st.lists(provisions(depth - 1), max_size=2).map(tuple)
    return st.builds(
        Provision,
        type=st.sampled_from(["permit", "permit", "deny", None]),
        period=periods,
        actors=actor_lists,
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
    id=st.sampled_from(IDS),
    status=st.sampled_from(["active"] * 5 + ["inactive", "draft", "rejected"]),
    scope=st.sampled_from([PRIVACY] * 9 + ["research", None]),
    patient=st.sampled_from([PATIENT] * 9 + ["Patient/other", None]),
    date_time=st.sampled_from([*MOMENTS, None]),
    provision=mostly(provisions(2), st.none(), 10),
    identifiers=st.sampled_from([()] * 4 + [(i,) for i in IDENTIFIERS] + [tuple(IDENTIFIERS)]),
    recorded_at=st.sampled_from(MOMENT_OR_NONE),
)
consent_lists = st.lists(consents, min_size=1, max_size=3)

# Requests are cheap to build and costly for hypothesis to draw one by one: each example draws its consents
# and one seeded Random, which builds a batch of requests (the cases). Shrinking still works on both.
BATCH = 24
LABEL_SETS: list[frozenset[Coding]] = (
    [frozenset()] * 6 + [frozenset({x}) for x in LABELS] + [frozenset(pair) for pair in some_pairs(LABELS)]
)
TYPE_SETS = [frozenset(), *(frozenset({t}) for t in TYPES), frozenset(TYPES[:2]), frozenset(TYPES[1:])]
ROLE_SETS = [
    frozenset(),
    frozenset({ROLE_IRCP}),
    frozenset({ROLE_IRCP, ASSIGNED_PEER_ROLE}),
    frozenset({ASSIGNED_PEER_ROLE}),
    frozenset(ROLES),
]


def random_item(rng: Random) -> RequestedItem:
    return RequestedItem(
        category=rng.choice(list(DataCategory)),
        security_labels=rng.choice(LABEL_SETS),
        resource_types=rng.choice(TYPE_SETS),
        data_date=rng.choice(MOMENT_OR_NONE),
        reference=rng.choice([None, *REFS]),
    )


def random_request(rng: Random) -> AccessRequest:
    return AccessRequest(
        patient=PATIENT,
        actor_reference=rng.choice(ACTORS),
        actor_roles=rng.choice(ROLE_SETS),
        purpose=rng.choice(PURPOSES),
        action=rng.choice(ACTIONS),
        items=tuple(random_item(rng) for _ in range(rng.randint(1, 4))),
        at=rng.choice(MOMENTS),
    )


batches = st.randoms(use_true_random=False).map(lambda rng: [random_request(rng) for _ in range(BATCH)])


def permitted(decision: Decision) -> list[bool]:
    return [d.permitted for d in decision.items]


def one(request: AccessRequest, item: RequestedItem) -> AccessRequest:
    return replace(request, items=(item,))


def indices(path: str) -> list[int]:
    return [int(i) for i in re.findall(r"\[(\d+)\]", path)]


def node_at(record: ConsentRecord, path: list[int]) -> Provision | None:
    node = record.provision or Provision(type=None)
    for index in path:
        if index >= len(node.provisions):
            return None
        node = node.provisions[index]
    return node


def change_at(node: Provision, path: list[int], change: Provision) -> Provision:
    """`node` with the provision at `path` replaced by `change`."""
    if not path:
        return change
    head = path[0]
    child = change_at(node.provisions[head], path[1:], change)
    return replace(node, provisions=(*node.provisions[:head], child, *node.provisions[head + 1 :]))


def deciders(records: list[ConsentRecord], d: ItemDecision, request: AccessRequest) -> list[ConsentRecord]:
    """The consents taking part that the decision may name (several may share an id)."""
    return [r for r in oracle.taking_part(records, request) if r.id == d.consent_id]


def all_paths(node: Provision, prefix: tuple[int, ...] = ()) -> list[tuple[int, ...]]:
    found = [prefix]
    for index, child in enumerate(node.provisions):
        found += all_paths(child, (*prefix, index))
    return found


def has_deny(node: Provision) -> bool:
    return node.type != "permit" or any(has_deny(child) for child in node.provisions)


# --- the engine is total, and agrees with the oracle ----------------------------------------------------


@weighted(4)
@given(st.lists(consents, max_size=4), batches)
def test_the_engine_agrees_with_an_independent_reading_of_the_rules(
    records: list[ConsentRecord], batch: list[AccessRequest]
) -> None:
    for request in batch:
        decision = evaluate(records, request)

        assert [d.item for d in decision.items] == list(request.items)
        for d in decision.items:
            assert d.reason
            assert "failed" not in d.reason, d.reason
            assert "could not be read" not in d.reason, d.reason
            assert d.permitted is oracle.released(records, d.item, request), (d, records, request)
            same = [x.permitted for x in decision.items if x.item == d.item]
            assert decision.is_permitted(d.item) == all(same)
            if not d.permitted:
                assert d.item.category not in decision.permitted_categories()
        for category in decision.permitted_categories():
            assert any(d.permitted for d in decision.items if d.item.category == category)


# --- whole paths ----------------------------------------------------------------------------------------


@weighted(2)
@given(consent_lists, batches)
def test_every_release_has_a_path_of_provisions_that_each_are_shown_to_match(
    records: list[ConsentRecord], batch: list[AccessRequest]
) -> None:
    for request in batch:
        for d in evaluate(records, request).items:
            if not d.permitted:
                continue
            assert d.provision_path is not None
            target = indices(d.provision_path)
            ends = [
                path[-1]
                for record in deciders(records, d, request)
                for path in oracle.release_paths(record, d.item, request)
                if len(path) == len(target) + 1
            ]
            assert any(node_at(record, target) is end for record in deciders(records, d, request) for end in ends), (
                d,
                records,
                request,
            )


def unshowable(node: Provision, item: RequestedItem, request: AccessRequest, pick: int) -> Provision:
    """`node` with one element replaced by one the request cannot show: it no longer releases (it may still
    apply, so the denials under it still hold)."""
    other = next(a for a in ACTORS if a != request.actor_reference)
    missing_role = next((r for r in ROLES if r not in request.actor_roles), None)
    choices: list[Provision] = [
        replace(node, actors=(ActorRule(None, other),)),  # addressed to someone else
        replace(node, codes=(Coding("http://loinc.org", "11450-4"),)),  # a code Peerway cannot read
        replace(node, classes=(Coding("http://loinc.org", "18776-5"),)),
        replace(node, period=Period(end=request.at - timedelta(days=1))),
    ]
    if missing_role is not None:
        choices.append(replace(node, actors=(ActorRule(missing_role, request.actor_reference),)))
    if item.data_date is None:
        choices.append(replace(node, data_period=Period(start=datetime(2024, 1, 1, tzinfo=UTC))))
    if item.reference is None:
        choices.append(replace(node, data_refs=("Goal/g1",)))
    if oracle.BROADER.get(request.purpose.code):
        choices.append(replace(node, purposes=(PURPOSE_TREAT,)))  # a broader purpose only
    return choices[pick % len(choices)]


@weighted(2)
@given(consent_lists, batches, st.integers(min_value=0), st.integers(min_value=0))
def test_a_narrower_provision_on_the_path_stops_that_path_releasing(
    records: list[ConsentRecord], batch: list[AccessRequest], level: int, pick: int
) -> None:
    """Narrowing any provision from the root down to the releasing permit (an ancestor or the permit itself)
    never lets nested permits release through it: the item is withheld, or released by another path."""
    for request in batch:
        for d in evaluate(records, request).items:
            if not d.permitted or d.provision_path is None:
                continue
            target = indices(d.provision_path)
            cut = target[: level % (len(target) + 1)]
            changed = []
            for record in records:
                node = node_at(record, cut) if record.id == d.consent_id else None
                if node is None or record.provision is None:
                    changed.append(record)
                    continue
                narrowed = unshowable(node, d.item, request, pick)
                changed.append(replace(record, provision=change_at(record.provision, cut, narrowed)))
            again = evaluate(changed, one(request, d.item)).items[0]
            if again.permitted:
                assert again.provision_path is not None
                through = again.consent_id == d.consent_id and indices(again.provision_path)[: len(cut)] == cut
                assert not through, (d, again, changed)
            assert again.permitted is oracle.released(changed, d.item, request)


def with_criterion(node: Provision, extra: Provision) -> Provision:
    """`node` with the elements of `extra` that `node` does not set yet (a new criterion narrows; more
    values in a list the provision already sets would widen that element)."""
    return replace(
        node,
        period=node.period or extra.period,
        actors=node.actors or extra.actors,
        actions=node.actions or extra.actions,
        purposes=node.purposes or extra.purposes,
        security_labels=node.security_labels or extra.security_labels,
        classes=node.classes or extra.classes,
        codes=node.codes or extra.codes,
        data_period=node.data_period or extra.data_period,
        data_refs=node.data_refs or extra.data_refs,
    )


@weighted(2)
@given(consent_lists, batches, st.data())
def test_adding_a_criterion_to_a_permit_with_no_deny_below_never_widens(
    records: list[ConsentRecord], batch: list[AccessRequest], data: st.DataObject
) -> None:
    """Any permit, at any depth, whose subtree holds no deny (a root only when it is the only consent: a
    narrower root may leave the item to an older consent). The criterion is any element the permit does not
    set yet, except restricted labels and explicit-only categories, which a permit names to cover them."""
    target = data.draw(st.integers(0, len(records) - 1))
    record = records[target]
    root = record.provision or Provision(type=None)
    candidates = [p for p in all_paths(root) if (n := node_at(record, list(p))) is not None and not has_deny(n)]
    if len(records) > 1:
        candidates = [p for p in candidates if p]
    if not candidates:
        return
    path = list(data.draw(st.sampled_from(candidates)))
    node = node_at(record, path)
    assert node is not None
    extra = data.draw(provisions(0))
    # Naming a restricted label or an explicit-only category is how a permit covers such data (rule 4): that
    # widens by design, so the added criterion names neither.
    extra = replace(
        extra,
        security_labels=tuple(c for c in extra.security_labels if (c.system, c.code) not in oracle.MUST_NAME),
        codes=tuple(c for c in extra.codes if not (c.system == CATEGORY and c.code in oracle.NAMED_ONLY)),
    )
    narrowed = with_criterion(node, extra)
    changed = [*records[:target], replace(record, provision=change_at(root, path, narrowed)), *records[target + 1 :]]

    for request in batch:
        before, after = permitted(evaluate(records, request)), permitted(evaluate(changed, request))
        assert all(b or not a for b, a in zip(before, after, strict=True)), (records, changed, request)


# --- adding denials never widens ------------------------------------------------------------------------


def insert(node: Provision, leaf: Provision, choices: list[int]) -> Provision:
    """`node` with `leaf` added as an exception at the position the choices pick."""
    if not choices or not node.provisions:
        return replace(node, provisions=(*node.provisions, leaf))
    index = choices[0] % (len(node.provisions) + 1)
    if index == len(node.provisions):
        return replace(node, provisions=(*node.provisions, leaf))
    child = insert(node.provisions[index], leaf, choices[1:])
    return replace(node, provisions=(*node.provisions[:index], child, *node.provisions[index + 1 :]))


@weighted(1)
@given(consent_lists, batches)
def test_a_deny_under_the_deciding_permit_withdraws_the_item(
    records: list[ConsentRecord], batch: list[AccessRequest]
) -> None:
    for request in batch:
        for d in evaluate(records, request).items:
            if not d.permitted or d.provision_path is None:
                continue
            path = indices(d.provision_path)
            changed = []
            for record in records:
                node = node_at(record, path) if record.id == d.consent_id else None
                if node is None or record.provision is None:
                    changed.append(record)
                else:
                    with_deny = replace(node, provisions=(*node.provisions, Provision("deny")))
                    changed.append(replace(record, provision=change_at(record.provision, path, with_deny)))
            again = evaluate(changed, one(request, d.item)).items[0]
            assert not again.permitted, again


@weighted(1)
@given(
    consent_lists,
    batches,
    deny_leaves,
    st.integers(min_value=0),
    st.lists(st.integers(min_value=0), max_size=3),
)
def test_adding_a_deny_provision_never_widens_what_is_permitted(
    records: list[ConsentRecord], batch: list[AccessRequest], leaf: Provision, which: int, choices: list[int]
) -> None:
    target = which % len(records)
    root = records[target].provision or Provision(type=None)
    changed = [
        *records[:target],
        replace(records[target], provision=insert(root, leaf, choices)),
        *records[target + 1 :],
    ]
    for request in batch:
        before, after = permitted(evaluate(records, request)), permitted(evaluate(changed, request))
        assert all(b or not a for b, a in zip(before, after, strict=True))


@weighted(1)
@given(consent_lists, batches, deny_leaves, st.none() | moments, st.sampled_from(IDS))
def test_adding_a_deny_consent_never_widens_what_is_permitted(
    records: list[ConsentRecord], batch: list[AccessRequest], leaf: Provision, when: datetime | None, id: str
) -> None:
    denial = ConsentRecord(id, "active", PRIVACY, PATIENT, when, leaf)
    for request in batch:
        before, after = permitted(evaluate(records, request)), permitted(evaluate([*records, denial], request))
        assert all(b or not a for b, a in zip(before, after, strict=True))


# --- ties, identity, withdrawal, order -------------------------------------------------------------------


@weighted(1)
@given(consent_lists, batches)
def test_on_a_tie_a_deny_wins_whatever_its_id(records: list[ConsentRecord], batch: list[AccessRequest]) -> None:
    for request in batch:
        for d in evaluate(records, request).items:
            if not d.permitted:
                continue
            # The decider is the newest releasing consent with the decision's id (several may share an id).
            decider = max(
                (r for r in deciders(records, d, request) if oracle.consent_verdict(r, d.item, request) == "release"),
                key=lambda r: oracle.utc(r.date_time),
            )
            for id in IDS:
                denial = ConsentRecord(id + "-deny", "active", PRIVACY, PATIENT, decider.date_time, Provision("deny"))
                again = evaluate([*records, denial], one(request, d.item)).items[0]
                assert not again.permitted, (again, records)


@weighted(1)
@given(consent_lists, batches, st.permutations(IDS))
def test_renaming_consents_never_changes_a_decision(
    records: list[ConsentRecord], batch: list[AccessRequest], names: list[str]
) -> None:
    rename = dict(zip(IDS, names, strict=True))
    renamed = [replace(r, id=rename[r.id]) for r in records]
    for request in batch:
        assert permitted(evaluate(renamed, request)) == permitted(evaluate(records, request))


@weighted(1)
@given(consent_lists, batches, st.data())
def test_a_newer_version_of_an_agreement_replaces_every_older_copy(
    records: list[ConsentRecord], batch: list[AccessRequest], data: st.DataObject
) -> None:
    """A Consent re-sent under the same identifier (a later recorded_at) stands alone for the agreement: an
    inactive one withdraws it, an active one decides in place of every earlier copy."""
    form = Identifier("urn:ehr:consent", "resent")
    tagged = [replace(r, identifiers=(form,)) if data.draw(st.booleans()) else r for r in records]
    latest = max([*MOMENTS[:2], *(r.recorded_at for r in tagged if r.recorded_at is not None)], key=oracle.utc)
    newest_date = max((oracle.utc(r.date_time) for r in tagged), default=oracle.MIN)
    version = ConsentRecord(
        id="v2",
        status=data.draw(st.sampled_from(["active", "inactive"])),
        scope=PRIVACY,
        patient=PATIENT,
        date_time=None if newest_date == oracle.MIN else newest_date,
        provision=data.draw(provisions(1)),
        identifiers=(form,),
        recorded_at=oracle.utc(latest) + timedelta(seconds=1),
    )
    untouched = [r for r in tagged if form not in r.identifiers]
    expected = untouched + ([version] if version.status == "active" else [])

    for request in batch:
        assert permitted(evaluate([*tagged, version], request)) == permitted(evaluate(expected, request))


@weighted(1)
@given(consent_lists, batches, st.sampled_from(["inactive", "rejected", "entered-in-error"]))
def test_withdrawing_every_consent_permits_nothing(
    records: list[ConsentRecord], batch: list[AccessRequest], status: str
) -> None:
    withdrawn = [replace(r, status=status) for r in records]
    for request in batch:
        assert not any(permitted(evaluate(withdrawn, request)))


@weighted(1)
@given(consent_lists, batches, st.randoms(use_true_random=False))
def test_the_order_consents_arrive_in_does_not_matter(
    records: list[ConsentRecord], batch: list[AccessRequest], rng: Random
) -> None:
    shuffled = list(records)
    rng.shuffle(shuffled)
    for request in batch:
        assert permitted(evaluate(records, request)) == permitted(evaluate(shuffled, request))


# --- time: a decision holds until unchanged_until ----------------------------------------------------------


@given(st.lists(consents, max_size=4), batches)
def test_every_decision_holds_until_the_moment_unchanged_until_names(
    records: list[ConsentRecord], batch: list[AccessRequest]
) -> None:
    tick = timedelta(microseconds=1)
    for request in batch:
        start = as_aware(request.at)
        until = unchanged_until(records, request.at)
        assert until is None or until >= start
        before = evaluate(records, request)
        later = [as_aware(m) for m in MOMENTS] + [start + tick, start + timedelta(days=400)]
        if until is not None:
            later += [until - tick, until]
        for moment in later:
            if moment < start or (until is not None and moment >= until):
                continue
            after = evaluate(records, replace(request, at=moment))
            assert [(d.permitted, d.consent_id) for d in after.items] == [
                (d.permitted, d.consent_id) for d in before.items
            ], (moment, until, records, request)
