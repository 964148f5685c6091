"""consent.engine.evaluate, rule by rule (consent/README.md): one table of cases per rule."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime

import pytest

import fhir_profiles
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
    Period,
    Provision,
    RequestedItem,
    evaluate,
)
from consent.categories import (
    ACT_CODE_SYSTEM,
    CATEGORY_SYSTEM,
    CONFIDENTIALITY_SYSTEM,
    EXPLICIT_ONLY,
    PARTICIPANT_ROLE_SYSTEM,
    PATIENT_PRIVACY,
    RESOURCE_TYPES_SYSTEM,
    category_coding,
)

AT = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
PATIENT = "Patient/client-1"
PEER = "Practitioner/peer-1"
OTHER = "Practitioner/peer-2"
PEER_ROLES = frozenset({ASSIGNED_PEER_ROLE, ROLE_IRCP})
R = Coding(CONFIDENTIALITY_SYSTEM, "R")
V = Coding(CONFIDENTIALITY_SYSTEM, "V")
N = Coding(CONFIDENTIALITY_SYSTEM, "N")
MH = Coding(ACT_CODE_SYSTEM, "MH")
LOINC_PROBLEMS = Coding("http://loinc.org", "11450-4")

INTERESTS = DataCategory.INTERESTS
CONTACT = DataCategory.CONTACT_DETAILS
DIAGNOSIS = DataCategory.DIAGNOSIS
NOTES = DataCategory.CLINICAL_NOTES


def code(category: DataCategory) -> Coding:
    return category_coding(category)


def rtype(name: str) -> Coding:
    return Coding(RESOURCE_TYPES_SYSTEM, name)


def year(y: int) -> Period:
    return Period(datetime(y, 1, 1, tzinfo=UTC), datetime(y, 12, 31, 23, 59, 59, tzinfo=UTC))


def permit(*children: Provision, **kw: object) -> Provision:
    return Provision("permit", provisions=children, **kw)  # type: ignore[arg-type]


def deny(*children: Provision, **kw: object) -> Provision:
    return Provision("deny", provisions=children, **kw)  # type: ignore[arg-type]


def record(
    provision: Provision | None,
    *,
    id: str = "c1",
    status: str = "active",
    scope: str | None = PATIENT_PRIVACY,
    patient: str | None = PATIENT,
    when: datetime | None = datetime(2024, 1, 1, tzinfo=UTC),
) -> ConsentRecord:
    return ConsentRecord(id, status, scope, patient, when, provision)


def item(
    category: DataCategory = INTERESTS,
    *labels: Coding,
    types: frozenset[str] = frozenset(),
    date: datetime | None = None,
    ref: str | None = None,
) -> RequestedItem:
    return RequestedItem(category, frozenset(labels), types, date, ref)


@dataclass(frozen=True)
class Ask:
    """What is asked, beyond the item: defaults are the client's own peer, for coordination of care."""

    actor: str = PEER
    roles: frozenset[Coding] = PEER_ROLES
    purpose: Coding = PURPOSE_COC
    action: Coding = ACTION_ACCESS
    at: datetime = AT
    patient: str = PATIENT


PEER_ASK = Ask()


def ask(it: RequestedItem, how: Ask = PEER_ASK) -> AccessRequest:
    return AccessRequest(how.patient, how.actor, how.roles, how.purpose, how.action, (it,), how.at)


def case(
    name: str,
    consents: list[ConsentRecord],
    it: RequestedItem,
    permitted: bool,
    reason: str = "",
    how: Ask = PEER_ASK,
    path: str | None = None,
) -> object:
    return pytest.param(consents, it, how, permitted, reason, path, id=name)


def check(
    consents: list[ConsentRecord], it: RequestedItem, how: Ask, permitted: bool, reason: str, path: str | None
) -> None:
    decision = evaluate(consents, ask(it, how))
    [result] = decision.items
    assert result.item == it
    assert result.permitted is permitted, result.reason
    assert decision.is_permitted(it) is permitted
    assert reason in result.reason
    if path is not None:
        assert result.provision_path == path
    if not permitted:
        assert "failed" not in result.reason


ARGS = "consents,it,how,permitted,reason,path"


# --- deny by default, fail closed ----------------------------------------------------------------

FAIL_CLOSED = [
    case("baseline: an active permit shares", [record(permit())], item(), True, "Consent/c1 provision permits"),
    case("no consent", [], item(), False, "no active patient-privacy consent for Patient/client-1"),
    case("only inactive", [record(permit(), status="inactive")], item(), False, "Consent/c1 is inactive"),
    case("only draft", [record(permit(), status="draft")], item(), False, "Consent/c1 is draft"),
    case("entered in error", [record(permit(), status="entered-in-error")], item(), False, "is entered-in-error"),
    case("scope research", [record(permit(), scope="research")], item(), False, "has scope research"),
    case("scope treatment", [record(permit(), scope="treatment")], item(), False, "not patient-privacy"),
    case("scope missing", [record(permit(), scope=None)], item(), False, "has scope none"),
    case("another patient", [record(permit(), patient="Patient/x")], item(), False, "is about Patient/x"),
    case("no patient", [record(permit(), patient=None)], item(), False, "is about no patient"),
    case("period ended", [record(permit(period=year(2023)))], item(), False, "Consent/c1 is not in force"),
    case("period not begun", [record(permit(period=year(2025)))], item(), False, "is not in force"),
    case("period open-ended", [record(permit(period=Period(start=AT)))], item(), True),
    case("period end inclusive", [record(permit(period=Period(end=AT)))], item(), True),
    case("naive period read as UTC", [record(permit(period=Period(datetime(2024, 1, 1))))], item(), True),
    case("root without type is a deny", [record(Provision(None))], item(), False, "denies interests"),
    case("consent without provisions", [record(None)], item(), False, "Consent/c1 provision denies"),
    case(
        "unknown data category",
        [record(permit())],
        RequestedItem("horoscope"),  # type: ignore[arg-type]
        False,
        "unknown data category 'horoscope'",
    ),
]


@pytest.mark.parametrize(ARGS, FAIL_CLOSED)
def test_fail_closed(
    consents: list[ConsentRecord], it: RequestedItem, how: Ask, permitted: bool, reason: str, path: str | None
) -> None:
    check(consents, it, how, permitted, reason, path)


# --- nested provisions: the deepest matching exception decides; among siblings deny wins -----------

to_peer = (ActorRule(ROLE_IRCP, PEER),)
to_other = (ActorRule(ROLE_IRCP, OTHER),)

NESTING = [
    case("deny for someone else", [record(permit(deny(actors=to_other)))], item(), True, path="provision"),
    case(
        "deny for this peer",
        [record(permit(deny(actors=to_peer)))],
        item(),
        False,
        "Consent/c1 provision.provision[0] denies interests to Practitioner/peer-1",
        path="provision.provision[0]",
    ),
    case("permit inside a deny", [record(deny(permit(actors=to_peer)))], item(), True, path="provision.provision[0]"),
    case("permit inside a deny, other peer", [record(deny(permit(actors=to_other)))], item(), False, path="provision"),
    case(
        "third level: deny inside permit inside deny",
        [record(deny(permit(deny(codes=(code(CONTACT),)), actors=to_peer)))],
        item(CONTACT),
        False,
        path="provision.provision[0].provision[0]",
    ),
    case(
        "third level does not match: the second decides",
        [record(deny(permit(deny(codes=(code(CONTACT),)), actors=to_peer)))],
        item(INTERESTS),
        True,
        path="provision.provision[0]",
    ),
    case(
        "siblings: deny after permit wins",
        [record(deny(permit(actors=to_peer), deny(codes=(code(INTERESTS),))))],
        item(),
        False,
        path="provision.provision[1]",
    ),
    case(
        "siblings: deny before permit wins",
        [record(deny(deny(codes=(code(INTERESTS),)), permit(actors=to_peer)))],
        item(),
        False,
        path="provision.provision[0]",
    ),
    case(
        "deep deny beats a shallow sibling permit",
        [record(deny(permit(deny(actors=to_peer)), permit(actors=to_peer)))],
        item(),
        False,
        path="provision.provision[0].provision[0]",
    ),
    case("nested provision without type is a deny", [record(permit(Provision(None)))], item(), False),
]


@pytest.mark.parametrize(ARGS, NESTING)
def test_nesting(
    consents: list[ConsentRecord], it: RequestedItem, how: Ask, permitted: bool, reason: str, path: str | None
) -> None:
    check(consents, it, how, permitted, reason, path)


# --- matching: actors, actions, purposes --------------------------------------------------------

as_other = Ask(actor=OTHER)
no_roles = Ask(roles=frozenset())
peer_role_only = (ActorRule(ASSIGNED_PEER_ROLE, None),)

WHO_AND_WHY = [
    case("actor by reference", [record(permit(actors=to_peer))], item(), True),
    case(
        "actor by reference, other asks", [record(permit(actors=to_peer))], item(), False, "not addressed to", as_other
    ),
    case("actor by role", [record(permit(actors=peer_role_only))], item(), True, how=as_other),
    case("actor by role, role missing", [record(permit(actors=peer_role_only))], item(), False, how=no_roles),
    case("permit needs the named role too", [record(permit(actors=to_peer))], item(), False, how=no_roles),
    case("any of several actors", [record(permit(actors=to_other + to_peer))], item(), True),
    case("deny holds in any role", [record(permit(deny(actors=to_peer)))], item(), False, how=no_roles),
    case("permit naming no one matches no one", [record(permit(actors=(ActorRule(None, None),)))], item(), False),
    case("deny naming no one matches everyone", [record(permit(deny(actors=(ActorRule(None, None),))))], item(), False),
    case("action listed", [record(permit(actions=(ACTION_ACCESS,)))], item(), True),
    case(
        "action not listed",
        [record(permit(actions=(ACTION_ACCESS,)))],
        item(),
        False,
        "does not cover the action disclose",
        Ask(action=ACTION_DISCLOSE),
    ),
    case("deny of disclose only", [record(permit(deny(actions=(ACTION_DISCLOSE,))))], item(), True),
    case("purpose listed", [record(permit(purposes=(PURPOSE_COC,)))], item(), True),
    case(
        "purpose not listed",
        [record(permit(purposes=(PURPOSE_COC,)))],
        item(),
        False,
        "does not cover the purpose TREAT",
        Ask(purpose=PURPOSE_TREAT),
    ),
    case("a permit for TREAT does not cover COC", [record(permit(purposes=(PURPOSE_TREAT,)))], item(), False),
    case("deny for TREAT catches COC", [record(permit(deny(purposes=(PURPOSE_TREAT,))))], item(), False),
]


@pytest.mark.parametrize(ARGS, WHO_AND_WHY)
def test_actor_action_purpose(
    consents: list[ConsentRecord], it: RequestedItem, how: Ask, permitted: bool, reason: str, path: str | None
) -> None:
    check(consents, it, how, permitted, reason, path)


# --- matching: what data (class, code, dataPeriod, data) -----------------------------------------

appointments = (rtype("Appointment"),)
appt = frozenset({"Appointment"})
upcoming = DataCategory.UPCOMING_APPOINTMENTS

WHAT = [
    case("class covers the item", [record(permit(classes=appointments))], item(upcoming, types=appt), True),
    case(
        "class covers part of the item",
        [record(permit(classes=appointments))],
        item(upcoming, types=frozenset({"Appointment", "Encounter"})),
        False,
        "other kinds of record",
    ),
    case("permit class, item type unknown", [record(permit(classes=appointments))], item(upcoming), False),
    case("deny class hits", [record(permit(deny(classes=appointments)))], item(upcoming, types=appt), False),
    case("deny class misses", [record(permit(deny(classes=appointments)))], item(types=frozenset({"Goal"})), True),
    case("deny class, item type unknown", [record(permit(deny(classes=appointments)))], item(), False),
    case(
        "deny class in a foreign system",
        [record(permit(deny(classes=(Coding("http://loinc.org", "18776-5"),))))],
        item(types=frozenset({"Goal"})),
        False,
    ),
    case("permit code names the category", [record(permit(codes=(code(INTERESTS),)))], item(), True),
    case(
        "permit code names another category",
        [record(permit(codes=(code(INTERESTS),)))],
        item(CONTACT),
        False,
        "does not name contact-details",
    ),
    case("permit code in a foreign system only", [record(permit(codes=(LOINC_PROBLEMS,)))], item(), False),
    case("deny code hits", [record(permit(deny(codes=(code(CONTACT),))))], item(CONTACT), False),
    case("deny code misses", [record(permit(deny(codes=(code(CONTACT),))))], item(INTERESTS), True),
    case("deny code in a foreign system", [record(permit(deny(codes=(LOINC_PROBLEMS,))))], item(), False),
    case("dataPeriod holds the date", [record(permit(data_period=year(2024)))], item(date=AT), True),
    case(
        "dataPeriod misses the date",
        [record(permit(data_period=year(2023)))],
        item(date=AT),
        False,
        "another period",
    ),
    case("permit dataPeriod, item undated", [record(permit(data_period=year(2024)))], item(), False),
    case("deny dataPeriod holds the date", [record(permit(deny(data_period=year(2024))))], item(date=AT), False),
    case("deny dataPeriod misses the date", [record(permit(deny(data_period=year(2023))))], item(date=AT), True),
    case("deny dataPeriod, item undated", [record(permit(deny(data_period=year(2023))))], item(), False),
    case("data lists the record", [record(permit(data_refs=("Goal/g1",)))], item(ref="Goal/g1"), True),
    case(
        "data lists other records",
        [record(permit(data_refs=("Goal/g1",)))],
        item(ref="Goal/g2"),
        False,
        "covers other records",
    ),
    case("permit data, item names no record", [record(permit(data_refs=("Goal/g1",)))], item(), False),
    case("deny data hits", [record(permit(deny(data_refs=("Goal/g1",))))], item(ref="Goal/g1"), False),
    case("deny data misses", [record(permit(deny(data_refs=("Goal/g1",))))], item(ref="Goal/g2"), True),
    case("deny data, item names no record", [record(permit(deny(data_refs=("Goal/g1",))))], item(), False),
]


@pytest.mark.parametrize(ARGS, WHAT)
def test_data_matching(
    consents: list[ConsentRecord], it: RequestedItem, how: Ask, permitted: bool, reason: str, path: str | None
) -> None:
    check(consents, it, how, permitted, reason, path)


# --- security labels and explicit-only categories ------------------------------------------------

LABELS = [
    case("unlabelled data under a plain permit", [record(permit())], item(), True),
    case("normal (N) data under a plain permit", [record(permit())], item(INTERESTS, N), True),
    case(
        "restricted data under a plain permit",
        [record(permit())],
        item(INTERESTS, R),
        False,
        "data labelled restricted (R) is shared only under a permit that names each label",
    ),
    case("restricted data, permit names R", [record(permit(security_labels=(R,)))], item(INTERESTS, R), True),
    case(
        "R and MH data, permit names R only",
        [record(permit(security_labels=(R,)))],
        item(INTERESTS, R, MH),
        False,
        "mental health (MH)",
    ),
    case("R and MH data, permit names both", [record(permit(security_labels=(R, MH)))], item(INTERESTS, R, MH), True),
    case("V data, permit names R", [record(permit(security_labels=(R,)))], item(INTERESTS, V), False),
    case(
        "a labelled permit controls labelled data only",
        [record(permit(security_labels=(R,)))],
        item(),
        False,
        "other security labels",
    ),
    case(
        "labelled permit nested in a plain permit",
        [record(permit(permit(security_labels=(R,))))],
        item(INTERESTS, R),
        True,
        path="provision.provision[0]",
    ),
    case(
        "deny of R hits R data",
        [record(permit(deny(security_labels=(R,)), security_labels=(R,)))],
        item(INTERESTS, R),
        False,
        "denies restricted (R) data",
    ),
    case("deny of R spares unlabelled data", [record(permit(deny(security_labels=(R,))))], item(), True),
    case(
        "deny of R also catches V data",
        [record(permit(deny(security_labels=(R,)), security_labels=(V,)))],
        item(INTERESTS, V),
        False,
        "very restricted (V) data",
    ),
    case(
        "deny without labels hits all data", [record(permit(deny(), security_labels=(R,)))], item(INTERESTS, R), False
    ),
    case(
        "diagnosis under a plain permit",
        [record(permit())],
        item(DIAGNOSIS),
        False,
        "diagnosis is shared only under a permit that names it",
    ),
    case(
        "clinical notes under a plain permit", [record(permit())], item(NOTES), False, "clinical-notes is shared only"
    ),
    case("diagnosis named", [record(permit(codes=(code(DIAGNOSIS),)))], item(DIAGNOSIS), True),
    case("diagnosis named, notes not", [record(permit(codes=(code(DIAGNOSIS),)))], item(NOTES), False),
    case(
        "diagnosis named in a nested permit",
        [record(deny(permit(codes=(code(DIAGNOSIS),), actors=to_peer)))],
        item(DIAGNOSIS),
        True,
    ),
    case(
        "a naming permit beats a plain sibling permit",
        [record(deny(permit(actors=to_peer), permit(codes=(code(DIAGNOSIS),))))],
        item(DIAGNOSIS),
        True,
        path="provision.provision[1]",
    ),
    case(
        "labelled diagnosis needs both the code and the label",
        [record(permit(codes=(code(DIAGNOSIS),)))],
        item(DIAGNOSIS, MH),
        False,
        "mental health (MH)",
    ),
]


@pytest.mark.parametrize(ARGS, LABELS)
def test_labels_and_explicit_categories(
    consents: list[ConsentRecord], it: RequestedItem, how: Ask, permitted: bool, reason: str, path: str | None
) -> None:
    check(consents, it, how, permitted, reason, path)


# --- several consents: the newest applicable one decides -----------------------------------------

JAN = datetime(2024, 1, 1, tzinfo=UTC)
MAR = datetime(2024, 3, 1, tzinfo=UTC)

SEVERAL = [
    case(
        "newer deny overrides older permit",
        [record(permit(), when=JAN), record(deny(), id="c2", when=MAR)],
        item(),
        False,
        "Consent/c2",
    ),
    case(
        "newer permit overrides older deny",
        [record(deny(), when=JAN), record(permit(), id="c2", when=MAR)],
        item(),
        True,
        "Consent/c2",
    ),
    case(
        "input order does not matter",
        [record(deny(), id="c2", when=MAR), record(permit(), when=JAN)],
        item(),
        False,
        "Consent/c2",
    ),
    case(
        "a newer consent that does not apply leaves the item to older ones",
        [record(permit(), when=JAN), record(deny(codes=(code(CONTACT),)), id="c2", when=MAR)],
        item(INTERESTS),
        True,
        "Consent/c1",
    ),
    case(
        "a newer inactive consent is skipped",
        [record(permit(), when=JAN), record(deny(), id="c2", when=MAR, status="inactive")],
        item(),
        True,
        "Consent/c1",
    ),
    case(
        "tie on date: the greater id decides (deny)",
        [record(permit(), id="a", when=JAN), record(deny(), id="b", when=JAN)],
        item(),
        False,
        "Consent/b",
    ),
    case(
        "tie on date: the greater id decides (permit)",
        [record(deny(), id="a", when=JAN), record(permit(), id="b", when=JAN)],
        item(),
        True,
        "Consent/b",
    ),
    case(
        "undated consent counts as oldest",
        [record(deny(), id="z", when=None), record(permit(), when=JAN)],
        item(),
        True,
        "Consent/c1",
    ),
    case("same date and id: deny wins", [record(permit(), when=JAN), record(deny(), when=JAN)], item(), False),
    case(
        "a broad newer permit does not carry an older explicit diagnosis permit",
        [record(permit(codes=(code(DIAGNOSIS),)), when=JAN), record(permit(), id="c2", when=MAR)],
        item(DIAGNOSIS),
        False,
        "Consent/c2 provision applies, but diagnosis",
    ),
    case(
        "none applies: the reason names each consent",
        [record(permit(actors=to_other), when=JAN), record(permit(period=year(2023)), id="c2", when=MAR)],
        item(),
        False,
        "Consent/c2 is not in force",
    ),
    case(
        "mixed naive and aware dates",
        [record(permit(), when=datetime(2024, 1, 1)), record(deny(), id="c2", when=MAR)],
        item(),
        False,
        "Consent/c2",
    ),
]


@pytest.mark.parametrize(ARGS, SEVERAL)
def test_several_consents(
    consents: list[ConsentRecord], it: RequestedItem, how: Ask, permitted: bool, reason: str, path: str | None
) -> None:
    check(consents, it, how, permitted, reason, path)


# --- the Decision ---------------------------------------------------------------------------------


def test_decision_reports_each_item_in_request_order_with_its_consent() -> None:
    consents = [record(permit(deny(codes=(code(CONTACT),))))]
    items = (item(INTERESTS), item(CONTACT), item(DIAGNOSIS), item(INTERESTS, R))
    request = replace(ask(item()), items=items)

    decision = evaluate(consents, request)

    assert [d.item for d in decision.items] == list(items)
    assert [d.permitted for d in decision.items] == [True, False, False, False]
    assert [d.consent_id for d in decision.items] == ["c1"] * 4
    assert decision.obligations == ()


def test_a_category_with_any_denied_item_is_not_a_permitted_category() -> None:
    items = (item(INTERESTS), item(INTERESTS, R), item(DataCategory.RECOVERY_GOALS), item(DIAGNOSIS))
    decision = evaluate([record(permit())], replace(ask(item()), items=items))

    assert decision.permitted_categories() == frozenset({DataCategory.RECOVERY_GOALS})
    assert decision.is_permitted(item(INTERESTS))
    assert not decision.is_permitted(item(INTERESTS, R))
    assert not decision.is_permitted(item(DataCategory.SAFETY_CONSIDERATIONS))  # never asked


def test_an_empty_request_gets_an_empty_decision() -> None:
    decision = evaluate([record(permit())], replace(ask(item()), items=()))
    assert decision.items == ()
    assert decision.permitted_categories() == frozenset()


def test_a_naive_request_time_is_read_as_utc() -> None:
    consents = [record(permit(period=Period(datetime(2024, 6, 1, tzinfo=UTC), datetime(2024, 6, 2, tzinfo=UTC))))]
    assert evaluate(consents, ask(item(), Ask(at=datetime(2024, 6, 1, 12)))).items[0].permitted


def test_revoking_the_only_consent_takes_effect_at_once() -> None:
    active = record(permit())
    assert evaluate([active], ask(item())).items[0].permitted
    decision = evaluate([replace(active, status="inactive")], ask(item()))
    assert not decision.items[0].permitted
    assert decision.items[0].reason == (
        "not permitted: no active patient-privacy consent for Patient/client-1 (Consent/c1 is inactive)"
    )


# --- the vocabulary matches what Peerway publishes --------------------------------------------------


def test_data_categories_match_the_published_code_system() -> None:
    # The engine may not import fhir_profiles; its tests check the two agree.
    assert CATEGORY_SYSTEM == fhir_profiles.DATA_CATEGORY_SYSTEM
    assert {c.value for c in DataCategory} == fhir_profiles.codes(CATEGORY_SYSTEM)
    explicit = {c for c in DataCategory if fhir_profiles.concept_property(CATEGORY_SYSTEM, c.value, "explicit-only")}
    assert explicit == EXPLICIT_ONLY
    assert PARTICIPANT_ROLE_SYSTEM == fhir_profiles.PARTICIPANT_ROLE_SYSTEM
    assert ASSIGNED_PEER_ROLE.code in fhir_profiles.codes(PARTICIPANT_ROLE_SYSTEM)
