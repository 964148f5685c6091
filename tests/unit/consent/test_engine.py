"""consent.engine.evaluate, rule by rule (consent/README.md): one table of cases per rule."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, timezone, tzinfo

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
    Identifier,
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
        "provision.class does not name every kind of record the item is, so it does not release data",
    ),
    case(
        "class names other kinds only",
        [record(permit(classes=appointments))],
        item(upcoming, types=frozenset({"Goal"})),
        False,
        "Consent/c1 covers other kinds of record",
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
PLUS5 = timezone(timedelta(hours=5))
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
        "tie on date: the deny wins (deny has the greater id)",
        [record(permit(), id="a", when=JAN), record(deny(), id="b", when=JAN)],
        item(),
        False,
        "Consent/b provision denies",
    ),
    case(
        "tie on date: the deny wins (deny has the smaller id)",
        [record(deny(), id="a", when=JAN), record(permit(), id="b", when=JAN)],
        item(),
        False,
        "Consent/a provision denies",
    ),
    case(
        "tie on date: the same instant in another offset is a tie",
        [record(permit(), id="a", when=JAN), record(deny(), id="b", when=datetime(2024, 1, 1, 5, tzinfo=PLUS5))],
        item(),
        False,
        "Consent/b provision denies",
    ),
    case(
        "an offset is not read as UTC: 03:00+05:00 is before midnight UTC",
        [record(permit(), id="a", when=JAN), record(deny(), id="b", when=datetime(2024, 1, 1, 3, tzinfo=PLUS5))],
        item(),
        True,
        "Consent/a provision permits",
    ),
    case(
        "tie on date: a release beats a permit that releases nothing",
        [record(permit(), id="a", when=JAN), record(permit(codes=(code(DIAGNOSIS),)), id="b", when=JAN)],
        item(),
        True,
        "Consent/a provision permits",
    ),
    case(
        "tie on date: a consent that does not apply leaves it to the other",
        [record(deny(codes=(code(CONTACT),)), id="a", when=JAN), record(permit(), id="b", when=JAN)],
        item(),
        True,
        "Consent/b provision permits",
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


# --- rule 2: each element read two ways, "possible" (a deny applies) and "shown" (a permit releases) ---------
# Written from the R4 Consent.provision element definitions; (possible, shown) per row. A permit built from the
# criteria releases exactly when they are shown; a deny built from them, nested in a permit that releases
# everything else, withholds exactly when they are possible.

IRCP_ONLY = frozenset({ROLE_IRCP})
JAN_1 = datetime(2024, 1, 1, tzinfo=UTC)
JAN_2 = datetime(2024, 1, 2, tzinfo=UTC)
MAR_1 = datetime(2024, 3, 1, tzinfo=UTC)
AT_UTC_10 = datetime(2024, 6, 1, 15, 0, tzinfo=PLUS5)  # 10:00 UTC, before AT (12:00 UTC)
AT_UTC_13 = datetime(2024, 6, 1, 18, 0, tzinfo=PLUS5)  # 13:00 UTC, after AT
DEC31_UTC_22 = datetime(2024, 1, 1, 3, 0, tzinfo=PLUS5)  # 2023-12-31 22:00 UTC
ETREAT = Coding("http://terminology.hl7.org/CodeSystem/v3-ActReason", "ETREAT")
HPAYMT = Coding("http://terminology.hl7.org/CodeSystem/v3-ActReason", "HPAYMT")
FHIR_TYPES = "http://hl7.org/fhir/fhir-types"
PSY = Coding(ACT_CODE_SYSTEM, "PSY")
U = Coding(CONFIDENTIALITY_SYSTEM, "U")
LOINC_CLASS = Coding("http://loinc.org", "18776-5")
NOT_A_CATEGORY = Coding(CATEGORY_SYSTEM, "horoscope")


def element(
    name: str,
    criteria: dict[str, object],
    possible: bool,
    shown: bool,
    it: RequestedItem | None = None,
    how: Ask = PEER_ASK,
) -> object:
    return pytest.param(criteria, it or item(), how, possible, shown, id=name)


ELEMENTS = [
    element("period holds now", {"period": Period(start=datetime(2024, 1, 1, tzinfo=UTC))}, True, True),
    element("period has ended", {"period": year(2023)}, False, False),
    element("period ends exactly now", {"period": Period(end=AT)}, True, True),
    element("period starts later today, +05:00", {"period": Period(start=AT_UTC_13)}, False, False),
    element("period started earlier today, +05:00", {"period": Period(start=AT_UTC_10)}, True, True),
    element("period ended earlier today, +05:00", {"period": Period(end=AT_UTC_10)}, False, False),
    element("actor: the asker in a role held", {"actors": to_peer}, True, True),
    element("actor: the asker in a role not held", {"actors": to_peer}, True, False, how=Ask(roles=frozenset())),
    element(
        "actor: the asker, no role named", {"actors": (ActorRule(None, PEER),)}, True, True, how=Ask(roles=frozenset())
    ),
    element("actor: someone else", {"actors": to_other}, False, False),
    element("actor: a role held", {"actors": peer_role_only}, True, True, how=as_other),
    element("actor: a role not held", {"actors": peer_role_only}, False, False, how=Ask(roles=IRCP_ONLY)),
    element("actor: naming no one", {"actors": (ActorRule(None, None),)}, True, False),
    element("actor: one of several rules", {"actors": to_other + peer_role_only}, True, True),
    element(
        "actor: a role not held, and a rule naming no one",
        {"actors": (ActorRule(Coding(PARTICIPANT_ROLE_SYSTEM, "other-role"), None), ActorRule(None, None))},
        True,
        False,
    ),
    element("action listed", {"actions": (ACTION_ACCESS,)}, True, True),
    element("action not listed", {"actions": (ACTION_DISCLOSE,)}, False, False),
    element("purpose listed", {"purposes": (PURPOSE_COC,)}, True, True),
    element("purpose: TREAT listed, COC asked", {"purposes": (PURPOSE_TREAT,)}, True, False),
    element(
        "purpose: TREAT listed, ETREAT asked", {"purposes": (PURPOSE_TREAT,)}, True, False, how=Ask(purpose=ETREAT)
    ),
    element(
        "purpose: COC listed, TREAT asked", {"purposes": (PURPOSE_COC,)}, False, False, how=Ask(purpose=PURPOSE_TREAT)
    ),
    element("purpose: ETREAT listed, COC asked", {"purposes": (ETREAT,)}, False, False),
    element("purpose: HPAYMT listed, COC asked", {"purposes": (HPAYMT,)}, False, False),
    element("class names the item's type", {"classes": appointments}, True, True, item(upcoming, types=appt)),
    element(
        "class in R5's fhir-types",
        {"classes": (Coding(FHIR_TYPES, "Appointment"),)},
        True,
        True,
        item(upcoming, types=appt),
    ),
    element(
        "class names both types",
        {"classes": (rtype("Appointment"), Coding(FHIR_TYPES, "Encounter"))},
        True,
        True,
        item(upcoming, types=frozenset({"Appointment", "Encounter"})),
    ),
    element(
        "class names one of two types",
        {"classes": appointments},
        True,
        False,
        item(upcoming, types=frozenset({"Appointment", "Encounter"})),
    ),
    element("class names another type", {"classes": appointments}, False, False, item(types=frozenset({"Goal"}))),
    element("class, the item's type unknown", {"classes": appointments}, True, False),
    element("class in a foreign system", {"classes": (LOINC_CLASS,)}, True, False, item(types=frozenset({"Goal"}))),
    element("code names the category", {"codes": (code(INTERESTS),)}, True, True),
    element("code names another category", {"codes": (code(CONTACT),)}, False, False),
    element("code in a foreign system", {"codes": (LOINC_PROBLEMS,)}, True, False),
    element("code of ours that is no category", {"codes": (NOT_A_CATEGORY,)}, True, False),
    element("code: ours and a foreign one", {"codes": (code(INTERESTS), LOINC_PROBLEMS)}, True, True),
    element("securityLabel carried", {"security_labels": (R,)}, True, True, item(INTERESTS, R)),
    element("securityLabel R, data held at V", {"security_labels": (R,)}, True, False, item(INTERESTS, V)),
    element("securityLabel V, data held at R", {"security_labels": (V,)}, False, False, item(INTERESTS, R)),
    element("securityLabel R, data held at N", {"security_labels": (R,)}, False, False, item(INTERESTS, N)),
    element("securityLabel N, data held at R", {"security_labels": (N,)}, True, False, item(INTERESTS, R)),
    element("securityLabel U, unlabelled data", {"security_labels": (U,)}, False, False),
    element("securityLabel MH, MH data", {"security_labels": (MH,)}, True, True, item(INTERESTS, MH)),
    element("securityLabel MH, PSY data", {"security_labels": (MH,)}, False, False, item(INTERESTS, PSY)),
    element("dataPeriod holds the date", {"data_period": year(2024)}, True, True, item(date=AT)),
    element("dataPeriod misses the date", {"data_period": year(2023)}, False, False, item(date=AT)),
    element("dataPeriod, the item undated", {"data_period": year(2024)}, True, False),
    element(
        "dataPeriod 2024, dated 22:00 UTC on Dec 31", {"data_period": year(2024)}, False, False, item(date=DEC31_UTC_22)
    ),
    element("data lists the record", {"data_refs": ("Goal/g1",)}, True, True, item(ref="Goal/g1")),
    element("data lists other records", {"data_refs": ("Goal/g1",)}, False, False, item(ref="Goal/g2")),
    element("data, the item names no record", {"data_refs": ("Goal/g1",)}, True, False),
]
EARGS = "criteria,it,how,possible,shown"


def _ask(it: RequestedItem, how: Ask) -> AccessRequest:
    return ask(it, how)


@pytest.mark.parametrize(EARGS, ELEMENTS)
def test_a_permit_releases_only_what_its_elements_show(
    criteria: dict[str, object], it: RequestedItem, how: Ask, possible: bool, shown: bool
) -> None:
    [result] = evaluate([record(permit(**criteria))], ask(it, how)).items
    assert result.permitted is shown, result.reason
    if possible and not shown:
        assert "so it does not release data" in result.reason


@pytest.mark.parametrize(EARGS, ELEMENTS)
def test_a_deny_withholds_whatever_its_elements_make_possible(
    criteria: dict[str, object], it: RequestedItem, how: Ask, possible: bool, shown: bool
) -> None:
    everything_else = permit(deny(**criteria), security_labels=tuple(it.security_labels))
    [result] = evaluate([record(everything_else)], ask(it, how)).items
    assert result.permitted is not possible, result.reason
    if possible:
        assert result.provision_path == "provision.provision[0]"


# --- rule 3: a permit releases only along a path whose every provision is shown to match ----------------
# The shapes a privacy officer found releasing data (issue 11): a root that narrows but cannot be shown to
# match let the permits nested under it release.

peer_in_assigned_role = (ActorRule(ASSIGNED_PEER_ROLE, PEER),)
no_longer_assigned = Ask(roles=IRCP_ONLY)
interests_permit = permit(codes=(code(INTERESTS),))

PATHS = [
    case(
        "untyped root for the peer as assigned peer; the same peer, no longer assigned",
        [record(Provision(None, actors=peer_in_assigned_role, provisions=(interests_permit,)))],
        item(),
        False,
        "provision.actor does not name Practitioner/peer-1 in a role it holds, so it does not release data",
        no_longer_assigned,
        "provision",
    ),
    case(
        "untyped root for the peer as assigned peer; the peer while assigned",
        [record(Provision(None, actors=peer_in_assigned_role, provisions=(interests_permit,)))],
        item(),
        True,
        path="provision.provision[0]",
    ),
    case(
        "deny root for one record; the item names no record",
        [record(deny(interests_permit, data_refs=("Goal/g1",)))],
        item(),
        False,
        "provision.data lists records and the item names none",
    ),
    case(
        "deny root for one record; that record",
        [record(deny(interests_permit, data_refs=("Goal/g1",)))],
        item(ref="Goal/g1"),
        True,
    ),
    case(
        "untyped root with a LOINC class",
        [record(Provision(None, classes=(LOINC_CLASS,), provisions=(interests_permit,)))],
        item(types=frozenset({"QuestionnaireResponse"})),
        False,
        "provision.class does not name every kind",
    ),
    case(
        "untyped root with a LOINC code",
        [record(Provision(None, codes=(LOINC_PROBLEMS,), provisions=(interests_permit,)))],
        item(),
        False,
        "provision.code names codes Peerway cannot read as interests",
    ),
    case(
        "deny root with a dataPeriod; the item undated",
        [record(deny(interests_permit, data_period=year(2024)))],
        item(),
        False,
        "provision.dataPeriod limits the data's dates and the item has no date",
    ),
    case(
        "deny root with a dataPeriod; the item dated within",
        [record(deny(interests_permit, data_period=year(2024)))],
        item(date=AT),
        True,
    ),
    case(
        "untyped root for TREAT; asked for COC",
        [record(Provision(None, purposes=(PURPOSE_TREAT,), provisions=(interests_permit,)))],
        item(),
        False,
        "provision.purpose names a broader purpose than COC",
    ),
    case(
        "untyped root for COC; asked for COC",
        [record(Provision(None, purposes=(PURPOSE_COC,), provisions=(interests_permit,)))],
        item(),
        True,
    ),
    case(
        "deny root of R data, nested permit of V data; V data",
        [record(deny(permit(security_labels=(V,)), security_labels=(R,)))],
        item(INTERESTS, V),
        False,
        "provision.securityLabel names other security labels than the item carries",
    ),
    case(
        "a middle deny that may apply blocks the permit below it",
        [record(permit(deny(interests_permit, actors=peer_in_assigned_role)))],
        item(),
        False,
        "Consent/c1 provision.provision[0] denies interests",
        no_longer_assigned,
    ),
    case(
        "a deny under a permit that may apply still holds",
        [record(permit(permit(deny(), data_period=year(2024))))],
        item(),
        False,
        "provision.provision[0].provision[0] denies",
    ),
    case(
        "a permit that may apply, with nothing under it, leaves the decision to its parent",
        [record(permit(permit(data_period=year(2024))))],
        item(),
        True,
        path="provision",
    ),
    case(
        "a nested permit adds to its parent and never takes away",
        [record(permit(permit(codes=(code(INTERESTS),)), security_labels=(R,)))],
        item(INTERESTS, R),
        True,
        path="provision",
    ),
    case(
        "a newer consent whose root may apply decides, and releases nothing",
        [record(permit(), when=JAN_1), record(permit(data_period=year(2024)), id="c2", when=MAR_1)],
        item(),
        False,
        "Consent/c2 provision applies, but provision.dataPeriod limits",
    ),
]


@pytest.mark.parametrize(ARGS, PATHS)
def test_a_release_needs_a_shown_path(
    consents: list[ConsentRecord], it: RequestedItem, how: Ask, permitted: bool, reason: str, path: str | None
) -> None:
    check(consents, it, how, permitted, reason, path)


# --- rule 4: the labels a permit must name, from the standard ----------------------------------------------
# Every v3-Confidentiality level and a sample of v3-ActCode labels, with whether a plain permit may carry data
# labelled with it to the peer (written from the code systems' definitions, not from consent.categories).

MUST_BE_NAMED = {
    CONFIDENTIALITY_SYSTEM: {"R", "V"},
    ACT_CODE_SYSTEM: {
        "BH", "COGN", "DVD", "EMOTDIS", "ETH", "ETHUD", "GDIS", "HIV", "MH", "MST", "OPIOIDUD", "PREGNANT", "PSY",
        "PSYTHPN", "SCA", "SDV", "SEX", "SICKLE", "SOC", "SPI", "STD", "SUD", "TBOO", "VIO", "42CFRPart2",
        "HIPAAPsyNotes", "Title38Section7332",
    },
}  # fmt: skip
FREE_TO_SHARE = {
    CONFIDENTIALITY_SYSTEM: {"U", "L", "M", "N"},
    ACT_CODE_SYSTEM: {"DEMO", "LOCIS", "OPTIN"},
    "http://example.org/local-labels": {"MH", "R"},  # same codes, another system: not HL7's labels
}
LABEL_CASES = [
    pytest.param(Coding(system, code), system in MUST_BE_NAMED and code in MUST_BE_NAMED[system], id=f"{code}")
    for table in (MUST_BE_NAMED, FREE_TO_SHARE)
    for system, codes in table.items()
    for code in sorted(codes)
]


@pytest.mark.parametrize(("label", "must_be_named"), LABEL_CASES)
def test_which_labels_a_permit_must_name(label: Coding, must_be_named: bool) -> None:
    plain = evaluate([record(permit())], ask(item(INTERESTS, label))).items[0]
    naming = evaluate([record(permit(security_labels=(label,)))], ask(item(INTERESTS, label))).items[0]
    assert plain.permitted is not must_be_named, plain.reason
    assert naming.permitted, naming.reason
    if must_be_named:
        assert f"({label.code}) is shared only under a permit that names each label" in plain.reason


# --- rule 6: copies sharing an identifier are one agreement; its newest version alone takes part ------------

FORM = Identifier("urn:oid:2.16.840.1.113883.19.5", "consent-form-7")
OTHER_FORM = Identifier("urn:oid:2.16.840.1.113883.19.5", "consent-form-8")


def version(
    provision: Provision | None,
    id: str,
    *,
    identifiers: tuple[Identifier, ...],
    when: datetime = JAN_1,
    recorded_at: datetime | None = None,
    status: str = "active",
) -> ConsentRecord:
    return replace(record(provision, id=id, when=when, status=status), identifiers=identifiers, recorded_at=recorded_at)


AGREEMENTS = [
    case(
        "the EHR re-sends the form inactive: the agreement is withdrawn",
        [
            version(permit(), "v1", identifiers=(FORM,), recorded_at=JAN_1),
            version(permit(), "v2", identifiers=(FORM,), recorded_at=JAN_2, status="inactive"),
        ],
        item(),
        False,
        "Consent/v1 is replaced by Consent/v2 (same identifier urn:oid:2.16.840.1.113883.19.5|consent-form-7)",
    ),
    case(
        "a newer version narrows: only it decides",
        [
            version(permit(), "v1", identifiers=(FORM,), recorded_at=JAN_1),
            version(permit(codes=(code(CONTACT),)), "v2", identifiers=(FORM,), recorded_at=JAN_2),
        ],
        item(INTERESTS),
        False,
        "Consent/v2 does not name interests",
    ),
    case(
        "a newer dateTime is a newer version whatever was recorded last",
        [
            version(deny(), "v1", identifiers=(FORM,), when=JAN_1, recorded_at=MAR_1),
            version(permit(), "v2", identifiers=(FORM,), when=MAR_1, recorded_at=JAN_1),
        ],
        item(),
        True,
        "Consent/v2 provision permits",
    ),
    case(
        "versions tied for newest, one inactive: withdrawn",
        [
            version(permit(), "v1", identifiers=(FORM,), recorded_at=JAN_2),
            version(permit(), "v2", identifiers=(FORM,), recorded_at=JAN_2, status="inactive"),
        ],
        item(),
        False,
        "Consent/v1 is withdrawn: Consent/v2 is inactive",
    ),
    case(
        "an older inactive copy does not withdraw a newer active one",
        [
            version(permit(), "v1", identifiers=(FORM,), recorded_at=JAN_1, status="inactive"),
            version(permit(), "v2", identifiers=(FORM,), recorded_at=JAN_2),
        ],
        item(),
        True,
        "Consent/v2 provision permits",
    ),
    case(
        "another agreement is untouched",
        [
            version(permit(), "v1", identifiers=(OTHER_FORM,), recorded_at=JAN_1),
            version(permit(), "v2", identifiers=(FORM,), recorded_at=JAN_2, status="inactive"),
        ],
        item(),
        True,
        "Consent/v1 provision permits",
    ),
    case(
        "copies linked through a third share one agreement",
        [
            version(permit(), "v1", identifiers=(OTHER_FORM,), recorded_at=JAN_1),
            version(permit(), "v2", identifiers=(OTHER_FORM, FORM), recorded_at=JAN_2),
            version(None, "v3", identifiers=(FORM,), recorded_at=MAR_1, status="inactive"),
        ],
        item(),
        False,
        "Consent/v1 is replaced by Consent/v3",
    ),
    case(
        "an unrecorded version counts as the oldest",
        [
            version(deny(), "v1", identifiers=(FORM,)),
            version(permit(), "v2", identifiers=(FORM,), recorded_at=JAN_1),
        ],
        item(),
        True,
        "Consent/v2 provision permits",
    ),
]


@pytest.mark.parametrize(ARGS, AGREEMENTS)
def test_one_agreement_many_versions(
    consents: list[ConsentRecord], it: RequestedItem, how: Ask, permitted: bool, reason: str, path: str | None
) -> None:
    check(consents, it, how, permitted, reason, path)


# --- rule 1: a fault inside the engine denies ----------------------------------------------------------------


def test_consents_that_cannot_be_read_deny_every_item() -> None:
    broken = replace(record(permit()), date_time="yesterday")  # type: ignore[arg-type]
    decision = evaluate([broken], replace(ask(item()), items=(item(), item(CONTACT))))
    assert [d.item for d in decision.items] == [item(), item(CONTACT)]
    assert [d.permitted for d in decision.items] == [False, False]
    assert {d.reason for d in decision.items} == {"not permitted: the consents could not be read (AttributeError)"}


def test_an_item_that_cannot_be_read_is_denied_alone() -> None:
    broken = RequestedItem(INTERESTS, security_labels=None)  # type: ignore[arg-type]
    decision = evaluate([record(permit())], replace(ask(item()), items=(broken, item(CONTACT))))
    assert [d.permitted for d in decision.items] == [False, True]
    assert decision.items[0].item is broken
    assert decision.items[0].reason == "not permitted: the consent engine failed on this item (TypeError)"
    assert decision.items[0].consent_id is None


def test_a_provision_that_cannot_be_read_denies_the_item() -> None:
    broken = permit(actors=(None,))
    [result] = evaluate([record(broken)], ask(item())).items
    assert not result.permitted
    assert result.reason == "not permitted: the consent engine failed on this item (AttributeError)"


# --- reasons: what a coordinator reads, word for word ------------------------------------------------------

THIRD_FORM = Identifier("urn:oid:2.16.840.1.113883.19.5", "consent-form-9")
DEMO = Coding(ACT_CODE_SYSTEM, "DEMO")


def reason(name: str, consents: list[ConsentRecord], it: RequestedItem, expected: str, how: Ask = PEER_ASK) -> object:
    return pytest.param(consents, it, how, expected, id=name)


REASONS = [
    reason("no consent at all", [], item(), "not permitted: no active patient-privacy consent for Patient/client-1"),
    reason(
        "two consents set aside",
        [record(permit(), status="inactive"), record(permit(), id="c2", status="")],
        item(),
        "not permitted: no active patient-privacy consent for Patient/client-1"
        " (Consent/c1 is inactive; Consent/c2 is without status)",
    ),
    reason(
        "versions tied for newest, one without status",
        [
            version(permit(), "v1", identifiers=(FORM,), recorded_at=JAN_2),
            version(permit(), "v2", identifiers=(FORM,), recorded_at=JAN_2, status=""),
        ],
        item(),
        "not permitted: no active patient-privacy consent for Patient/client-1 (Consent/v1 is withdrawn:"
        " Consent/v2 is without status (same identifier urn:oid:2.16.840.1.113883.19.5|consent-form-7);"
        " Consent/v2 is without status)",
    ),
    reason(
        "a consent without id",
        [record(permit(actors=to_other), id="")],
        item(),
        "not permitted: no active consent covers interests (Consent (no id) is not addressed to Practitioner/peer-1)",
    ),
    reason(
        "four consents, none applies: three named",
        [
            record(permit(security_labels=(R,)), id="c1"),
            record(permit(data_period=year(2023)), id="c2", when=JAN_2),
            record(permit(data_refs=("Goal/g1",)), id="c3", when=MAR_1),
            record(permit(actions=(ACTION_DISCLOSE,)), id="c4", when=datetime(2024, 4, 1, tzinfo=UTC)),
        ],
        item(date=AT, ref="Goal/g2"),
        "not permitted: no active consent covers interests (Consent/c4 does not cover the action access; "
        "Consent/c3 covers other records; Consent/c2 covers data from another period; ...)",
    ),
    reason(
        "three consents, none applies: all named",
        [
            record(permit(security_labels=(R,)), id="c1"),
            record(permit(data_period=year(2023)), id="c2", when=JAN_2),
            record(permit(data_refs=("Goal/g1",)), id="c3", when=MAR_1),
        ],
        item(date=AT, ref="Goal/g2"),
        "not permitted: no active consent covers interests (Consent/c3 covers other records; "
        "Consent/c2 covers data from another period; Consent/c1 covers only data with other security labels)",
    ),
    reason(
        "released with its labels named",
        [record(permit(security_labels=(R, MH)))],
        item(INTERESTS, R, MH),
        "Consent/c1 provision permits interests (mental health (MH), restricted (R)) to Practitioner/peer-1 for COC",
    ),
    reason(
        "two labels missing from the permit",
        [record(permit())],
        item(INTERESTS, R, MH),
        "not permitted: Consent/c1 provision applies, but data labelled mental health (MH), restricted (R) is shared"
        " only under a permit that names each label",
    ),
    reason(
        "a deny of two labels",
        [record(permit(deny(security_labels=(R, MH)), security_labels=(R, MH)))],
        item(INTERESTS, R, MH),
        "Consent/c1 provision.provision[0] denies mental health (MH), restricted (R) data to Practitioner/peer-1",
    ),
    reason(
        "a deny of a label Peerway has no name for",
        [record(permit(deny(security_labels=(DEMO,))))],
        item(INTERESTS, DEMO),
        "Consent/c1 provision.provision[0] denies DEMO data to Practitioner/peer-1",
    ),
    reason(
        "a deny root whose permit cannot be shown",
        [record(Provision(None, actors=peer_in_assigned_role, provisions=(interests_permit,)))],
        item(),
        "Consent/c1 provision denies interests to Practitioner/peer-1 (provision.provision[0] permits, but"
        " provision.actor does not name Practitioner/peer-1 in a role it holds, so it does not release data)",
        no_longer_assigned,
    ),
    reason(
        "two permits at one date: the first by id is named",
        [record(permit(), id="b", when=JAN), record(permit(), id="a", when=JAN)],
        item(),
        "Consent/a provision permits interests to Practitioner/peer-1 for COC",
    ),
    reason(
        "two sibling permits: the first is named",
        [record(deny(permit(), permit()))],
        item(),
        "Consent/c1 provision.provision[0] permits interests to Practitioner/peer-1 for COC",
    ),
    reason(
        "versions tied for newest, both replacing an older one",
        [
            version(permit(), "v1", identifiers=(FORM,), recorded_at=JAN_1),
            version(deny(), "v2", identifiers=(FORM,), recorded_at=JAN_2),
            version(deny(), "v3", identifiers=(FORM,), recorded_at=JAN_2),
        ],
        item(),
        "Consent/v2 provision denies interests to Practitioner/peer-1",
    ),
]


@pytest.mark.parametrize(("consents", "it", "how", "expected"), REASONS)
def test_reasons_word_for_word(consents: list[ConsentRecord], it: RequestedItem, how: Ask, expected: str) -> None:
    [result] = evaluate(consents, ask(it, how)).items
    assert result.reason == expected


def test_the_replaced_versions_are_named_in_the_reasons() -> None:
    consents = [
        version(permit(), "v1", identifiers=(FORM, THIRD_FORM), recorded_at=JAN_1),
        version(permit(), "v2", identifiers=(FORM,), recorded_at=JAN_2, status="inactive"),
        version(permit(), "v3", identifiers=(FORM,), recorded_at=JAN_2, status="inactive"),
    ]
    [result] = evaluate(consents, ask(item())).items
    assert result.reason == (
        "not permitted: no active patient-privacy consent for Patient/client-1 (Consent/v1 is replaced by"
        " Consent/v2, Consent/v3 (same identifier urn:oid:2.16.840.1.113883.19.5|consent-form-7,"
        " urn:oid:2.16.840.1.113883.19.5|consent-form-9); Consent/v2 is inactive; Consent/v3 is inactive)"
    )


def test_copies_linked_only_through_an_earlier_copy_are_one_agreement() -> None:
    # v1 carries both identifiers; v2 shares one of them and v3 the other: all three are one agreement.
    consents = [
        version(permit(), "v1", identifiers=(FORM, THIRD_FORM), recorded_at=JAN_1),
        version(permit(), "v2", identifiers=(FORM,), recorded_at=JAN_2),
        version(permit(), "v3", identifiers=(THIRD_FORM,), recorded_at=MAR_1, status="inactive"),
    ]
    for order in (consents, consents[::-1], [consents[1], consents[2], consents[0]]):
        [result] = evaluate(order, ask(item())).items
        assert not result.permitted, result.reason


def test_the_purpose_hierarchy_is_a_tree() -> None:
    # The engine walks PURPOSE_PARENTS upwards; a cycle would never end. From v3-ActReason: COC and ETREAT
    # specialise TREAT, which specialises nothing Peerway needs.
    from consent.categories import PURPOSE_PARENTS

    for start in PURPOSE_PARENTS:
        seen: set[Coding] = set()
        current: Coding | None = start
        while current is not None:
            assert current not in seen, f"{start} leads to a cycle"
            seen.add(current)
            current = PURPOSE_PARENTS.get(current)


def test_a_category_given_as_its_code_is_read_as_the_category() -> None:
    [result] = evaluate([record(permit())], ask(RequestedItem("interests"))).items  # type: ignore[arg-type]
    assert result.permitted, result.reason


class _NoOffset(tzinfo):
    """A time zone that does not know its offset: such a datetime counts as naive, read as UTC."""

    def utcoffset(self, dt: datetime | None) -> timedelta | None:
        return None

    def dst(self, dt: datetime | None) -> timedelta | None:
        return None

    def tzname(self, dt: datetime | None) -> str | None:
        return None


def test_a_time_zone_without_an_offset_is_read_as_utc() -> None:
    unknown_zone = datetime(2024, 6, 1, 12, 0, tzinfo=_NoOffset())
    consents = [record(permit(period=Period(start=datetime(2024, 6, 1, 11, tzinfo=UTC))))]
    [result] = evaluate(consents, ask(item(), Ask(at=unknown_zone))).items
    assert result.permitted, result.reason


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
    assert decision.is_permitted(item(DataCategory.SAFETY_CONSIDERATIONS)) is False  # never asked


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
