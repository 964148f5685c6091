"""service.fhir.consent: FHIR Consent JSON (R4 and R5-shaped) -> ConsentRecord, and what intake refuses."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consent import (
    ACTION_ACCESS,
    ASSIGNED_PEER_ROLE,
    PURPOSE_COC,
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
    CONFIDENTIALITY_SYSTEM,
    CONSENT_ACTION_SYSTEM,
    FHIR_TYPES_SYSTEM,
    RESOURCE_TYPES_SYSTEM,
    category_coding,
)
from service.errors import InvalidResource
from service.fhir.consent import consent_status_of, parse_consent, subject_element

LEAP_FILE = Path(__file__).parents[2] / "fixtures" / "consent" / "leap-cds-r4-consent-permit-with-deny-R-label.json"
LEAP_ID = "consent-boris-deny-restricted-label"
LEAP_IDENTIFIER = Identifier("http://sdhealthconnect.github.io/leap/samples/ids", LEAP_ID)
R = Coding(CONFIDENTIALITY_SYSTEM, "R")
IRCP_CONCEPT = {"coding": [{"system": ROLE_IRCP.system, "code": ROLE_IRCP.code}]}
PRIVACY_SCOPE = {
    "coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]
}


def leap() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(LEAP_FILE.read_text())
    return data


def request(actor: str, *items: RequestedItem, at: datetime = datetime(2024, 6, 1, tzinfo=UTC)) -> AccessRequest:
    return AccessRequest("Patient/52", actor, frozenset({ROLE_IRCP}), PURPOSE_COC, ACTION_ACCESS, items, at)


# --- the LEAP sample ------------------------------------------------------------------------------


def test_the_leap_consent_reads_as_a_permit_with_a_nested_deny_of_restricted_data() -> None:
    record = parse_consent(leap())

    assert record.id == LEAP_ID  # it has no id: the identifier names it
    assert record.status == "active"
    assert record.scope == "patient-privacy"  # carried in category, not scope
    assert record.patient == "Patient/52"
    assert record.date_time == datetime(2019, 11, 1, tzinfo=UTC)
    assert record.provision == Provision(
        type="permit",
        period=Period(datetime(2019, 11, 1, tzinfo=UTC), datetime(2029, 1, 1, 23, 59, 59, 999999, tzinfo=UTC)),
        provisions=(
            Provision(
                type="deny",
                actors=(ActorRule(ROLE_IRCP, "Organization/54"),),
                actions=(Coding(CONSENT_ACTION_SYSTEM, "access"), Coding(CONSENT_ACTION_SYSTEM, "correct")),
                security_labels=(R,),
            ),
        ),
    )


def test_the_leap_consent_permits_an_actor_and_denies_restricted_data_to_organization_54() -> None:
    plain = RequestedItem(DataCategory.INTERESTS)
    restricted = RequestedItem(DataCategory.INTERESTS, frozenset({R}))
    consents = [parse_consent(leap())]

    to_peer = evaluate(consents, request("Practitioner/p1", plain, restricted))
    to_org = evaluate(consents, request("Organization/54", plain, restricted))
    too_late = evaluate(consents, request("Practitioner/p1", plain, at=datetime(2029, 1, 2, tzinfo=UTC)))

    assert to_peer.is_permitted(plain)
    assert to_peer.items[0].reason == f"Consent/{LEAP_ID} provision permits interests to Practitioner/p1 for COC"
    assert not to_peer.is_permitted(restricted)  # the permit does not name R
    assert to_org.is_permitted(plain)
    assert not to_org.is_permitted(restricted)
    assert to_org.items[1].provision_path == "provision.provision[0]"
    assert to_org.items[1].reason == (
        f"Consent/{LEAP_ID} provision.provision[0] denies restricted (R) data to Organization/54"
    )
    assert not too_late.is_permitted(plain)


def test_a_leap_consent_with_another_scope_parses_but_shares_nothing() -> None:
    data = leap()
    data["scope"] = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "research"}]}
    record = parse_consent(data)

    assert record.scope == "research"
    decision = evaluate([record], request("Practitioner/p1", RequestedItem(DataCategory.INTERESTS)))
    assert not decision.items[0].permitted
    assert "has scope research, not patient-privacy" in decision.items[0].reason


def test_without_scope_or_privacy_category_an_r4_consent_is_refused() -> None:
    data = leap()
    data["category"] = data["category"][1:]
    with pytest.raises(InvalidResource) as raised:
        parse_consent(data)
    assert raised.value.expression == "Consent.scope"


# --- R5-shaped consents -----------------------------------------------------------------------------


def leap_as_r5() -> dict[str, Any]:
    """The LEAP consent as R5 writes it: decision, Consent.period, subject, date, untyped provisions."""
    r4 = leap()
    deny = r4["provision"]["provision"][0]
    return {
        "resourceType": "Consent",
        "identifier": r4["identifier"],
        "status": "active",
        "category": r4["category"],
        "subject": r4["patient"],
        "date": "2019-11-01",
        "period": r4["provision"]["period"],
        "controller": r4["organization"],
        "decision": "permit",
        "provision": [{k: v for k, v in deny.items() if k != "type"}],
    }


def test_an_r5_consent_reads_into_the_same_model_as_its_r4_twin() -> None:
    assert parse_consent(leap_as_r5()) == parse_consent(leap())


def test_r5_exceptions_alternate_and_grantees_bound_the_consent() -> None:
    peer = {"reference": "https://ehr.example/fhir/Practitioner/p1/_history/3"}
    data = {
        "resourceType": "Consent",
        "id": "r5",
        "status": "active",
        "category": [PRIVACY_SCOPE],
        "subject": {"reference": "Patient/52"},
        "grantee": [peer],
        "decision": "deny",
        "provision": [
            {
                "purpose": [{"system": PURPOSE_COC.system, "code": PURPOSE_COC.code}],
                "provision": [{"code": [{"coding": [{"system": category_coding(DataCategory.DIAGNOSIS).system,
                                                      "code": "diagnosis"}]}]}],
            }
        ],
    }  # fmt: skip
    record = parse_consent(data)

    assert record.provision == Provision(
        type="deny",
        actors=(ActorRule(None, "Practitioner/p1"),),
        provisions=(
            Provision(
                type="permit",
                purposes=(PURPOSE_COC,),
                provisions=(Provision(type="deny", codes=(category_coding(DataCategory.DIAGNOSIS),)),),
            ),
        ),
    )
    decision = evaluate(
        [record],
        request("Practitioner/p1", RequestedItem(DataCategory.RECOVERY_GOALS), RequestedItem(DataCategory.DIAGNOSIS)),
    )
    assert [d.permitted for d in decision.items] == [True, False]


def test_an_r5_consent_without_a_privacy_category_has_no_scope() -> None:
    data = leap_as_r5()
    data["category"] = data["category"][1:]
    assert parse_consent(data).scope is None


def test_the_client_is_named_in_patient_in_r4_and_in_subject_in_r5() -> None:
    assert subject_element(leap()) == "patient"
    assert subject_element(leap_as_r5()) == "subject"


@pytest.mark.parametrize("system", [FHIR_TYPES_SYSTEM, RESOURCE_TYPES_SYSTEM])
def test_r5_resource_types_keep_their_system_and_decide_for_data_of_that_type(system: str) -> None:
    # R5 names resource types in http://hl7.org/fhir/fhir-types; R4's resource-types system means the same.
    data = leap_as_r5()
    data["decision"] = "deny"
    permit = data["provision"][0]
    del permit["securityLabel"]
    permit["resourceType"] = [{"system": system, "code": "Encounter"}]
    record = parse_consent(data)

    assert record.provision is not None
    [exception] = record.provision.provisions
    assert exception.type == "permit"
    assert exception.classes == (Coding(system, "Encounter"),)
    assert exception.actors == (ActorRule(ROLE_IRCP, "Organization/54"),)  # R5 actor.role: a CodeableConcept
    stay = RequestedItem(DataCategory.ADMISSION_DISCHARGE, resource_types=frozenset({"Encounter"}))
    name = RequestedItem(DataCategory.PREFERRED_NAME, resource_types=frozenset({"Patient"}))
    decision = evaluate([record], request("Organization/54", stay, name))
    assert [d.permitted for d in decision.items] == [True, False]


# --- versions of one agreement: identifiers and the version's time --------------------------------


@pytest.mark.parametrize("source", [leap, leap_as_r5], ids=["r4", "r5"])
def test_identifiers_and_meta_last_updated_are_read(source: Callable[[], dict[str, Any]]) -> None:
    data = source()
    data["identifier"] += [
        {"value": "no-system"},
        {"system": "urn:ietf:rfc:3986"},
        {"use": "secondary", "system": "urn:peerway:agreement", "value": "a-1"},
    ]
    data["meta"] = {"versionId": "4", "lastUpdated": "2024-03-05T06:07:08.5+01:00"}
    record = parse_consent(data)

    assert record.identifiers == (LEAP_IDENTIFIER, Identifier("urn:peerway:agreement", "a-1"))
    assert record.recorded_at == datetime(2024, 3, 5, 5, 7, 8, 500000, tzinfo=UTC)


@pytest.mark.parametrize("source", [leap, leap_as_r5], ids=["r4", "r5"])
def test_without_identifiers_or_meta_there_is_nothing_to_tie_or_order_versions_by(
    source: Callable[[], dict[str, Any]],
) -> None:
    data = source()
    del data["identifier"]
    record = parse_consent(data)
    assert record.identifiers == ()
    assert record.recorded_at is None
    assert parse_consent({**data, "meta": {"versionId": "1"}}).recorded_at is None


# --- what intake refuses, and where ---------------------------------------------------------------


def r4(change: Any) -> dict[str, Any]:
    data = leap()
    change(data)
    return data


def r5(change: Any) -> dict[str, Any]:
    data = leap_as_r5()
    change(data)
    return data


def nested(data: dict[str, Any]) -> dict[str, Any]:
    node: dict[str, Any] = data["provision"]["provision"][0]
    return node


def deeply_nested(data: dict[str, Any]) -> None:
    node = data["provision"]
    for _ in range(20):
        node["provision"] = [{"type": "deny"}]
        node = node["provision"][0]


INVALID = [
    pytest.param(r4(lambda d: d["provision"].update(type="maybe")), "Consent.provision.type", id="root type"),
    pytest.param(r4(lambda d: nested(d).update(type="allow")), "Consent.provision.provision[0].type", id="nested type"),
    pytest.param(r4(lambda d: nested(d).update(type=5)), "Consent.provision.provision[0].type", id="type not a string"),
    pytest.param(r4(lambda d: d.update(status="done")), "Consent.status", id="unknown status"),
    pytest.param(r4(lambda d: d.pop("status")), "Consent.status", id="no status"),
    pytest.param(r4(lambda d: d.update(resourceType="Patient")), "Consent.resourceType", id="not a Consent"),
    pytest.param(r4(lambda d: d.pop("resourceType")), "Consent.resourceType", id="no resourceType"),
    pytest.param(r4(lambda d: d.update(dateTime="2019-13")), "Consent.dateTime", id="bad dateTime"),
    pytest.param(
        r4(lambda d: d["provision"]["period"].update(start="2019-02-30")),
        "Consent.provision.period.start",
        id="bad period start",
    ),
    pytest.param(r4(lambda d: d.update(decisionMaker="x")), "Consent.decisionMaker", id="unknown element"),
    pytest.param(
        r4(lambda d: nested(d)["actor"][0].pop("role")),
        "Consent.provision.provision[0].actor[0].role",
        id="actor without role",
    ),
    pytest.param(
        r4(lambda d: nested(d)["actor"][0].update(reference={"identifier": {"value": "54"}})),
        "Consent.provision.provision[0].actor[0].reference",
        id="actor reference without reference",
    ),
    pytest.param(
        r4(lambda d: nested(d)["securityLabel"][0].pop("system")),
        "Consent.provision.provision[0].securityLabel[0]",
        id="label without system",
    ),
    pytest.param(
        r4(lambda d: d["provision"].update(code=[{"text": "assisted suicide"}])),
        "Consent.provision.code[0]",
        id="code without coding",
    ),
    pytest.param(
        r4(lambda d: nested(d).update(modifierExtension=[{"url": "http://x.example", "valueBoolean": True}])),
        "Consent.provision.provision[0].modifierExtension",
        id="modifier extension",
    ),
    pytest.param(
        r4(lambda d: nested(d).update(data=[{"meaning": "dependents", "reference": {"reference": "Goal/g"}}])),
        "Consent.provision.provision[0].data[0].meaning",
        id="deny of dependents",
    ),
    pytest.param(
        r4(lambda d: nested(d).update(data=[{"meaning": "all", "reference": {"reference": "Goal/g"}}])),
        "Consent.provision.provision[0].data[0].meaning",
        id="unknown data meaning",
    ),
    pytest.param(r4(deeply_nested), "Consent.provision" + ".provision[0]" * 16, id="nested too deep"),
    pytest.param(r5(lambda d: d.update(decision="allow")), "Consent.decision", id="r5 bad decision"),
    pytest.param(r5(lambda d: d.pop("decision")), "Consent.decision", id="r5 provisions without decision"),
    pytest.param(r5(lambda d: d["provision"][0].update(type="deny")), "Consent.provision[0].type", id="r5 typed"),
    pytest.param(
        r5(lambda d: d["provision"][0].update(expression={"language": "text/fhirpath", "expression": "true"})),
        "Consent.provision[0].expression",
        id="r5 expression",
    ),
    pytest.param(r5(lambda d: d.update(status="proposed")), "Consent.status", id="r5 status from r4"),
    pytest.param(r5(lambda d: d.update(period={"end": "soon"})), "Consent.period.end", id="r5 bad period"),
    pytest.param(r5(lambda d: d.update(grantee={"reference": "x"})), "Consent.grantee", id="r5 grantee not a list"),
    pytest.param(
        r5(lambda d: d["provision"][0].update(actor=[{}])), "Consent.provision[0].actor[0]", id="r5 actor naming no one"
    ),
    pytest.param(
        r4(lambda d: d.update(meta={"lastUpdated": "yesterday"})), "Consent.meta.lastUpdated", id="bad lastUpdated"
    ),
    pytest.param(
        r5(lambda d: d.update(meta={"lastUpdated": "2024-13-01T00:00:00Z"})),
        "Consent.meta.lastUpdated",
        id="r5 bad lastUpdated",
    ),
    pytest.param(r5(lambda d: d.update(meta=["x"])), "Consent.meta", id="r5 meta not an object"),
]


@pytest.mark.parametrize(("data", "expression"), INVALID)
def test_invalid_consents_are_refused_naming_the_element(data: dict[str, Any], expression: str) -> None:
    with pytest.raises(InvalidResource) as raised:
        parse_consent(data)
    assert raised.value.expression is not None
    assert raised.value.expression.startswith(expression)
    assert raised.value.status == 422


# --- datatypes ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        ("2024", "2024", Period(datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 12, 31, 23, 59, 59, 999999, UTC))),
        (
            "2024-02",
            "2024-02",
            Period(datetime(2024, 2, 1, tzinfo=UTC), datetime(2024, 2, 29, 23, 59, 59, 999999, UTC)),
        ),
        (
            "2024-02-03T04:05:06.123456789+02:00",
            "2024-02-03T04:05:06Z",
            Period(
                datetime.fromisoformat("2024-02-03T04:05:06.123456+02:00"), datetime(2024, 2, 3, 4, 5, 6, tzinfo=UTC)
            ),
        ),
    ],
)
def test_partial_dates_span_their_whole_precision(start: str, end: str, expected: Period) -> None:
    data = leap()
    data["provision"]["period"] = {"start": start, "end": end}
    provision = parse_consent(data).provision
    assert provision is not None
    assert provision.period == expected


def test_absolute_references_are_read_as_local_ones() -> None:
    data = leap()
    data["patient"] = {"reference": "https://ehr.example/fhir/Patient/52/_history/2"}
    nested(data)["actor"][0]["reference"] = {"reference": "https://ehr.example/fhir/Organization/54"}
    record = parse_consent(data)
    assert record.patient == "Patient/52"
    assert record.provision is not None
    assert record.provision.provisions[0].actors[0].reference == "Organization/54"


def test_an_r4_consent_without_provision_has_none() -> None:
    data = leap()
    del data["provision"]
    assert parse_consent(data).provision is None


@pytest.mark.parametrize(
    ("data", "status"),
    [
        pytest.param(leap(), "active", id="r4"),
        pytest.param(r4(lambda d: d.update(status="rejected")), "rejected", id="r4 rejected"),
        pytest.param(r5(lambda d: d.update(status="not-done")), "not-done", id="r5 not-done"),
    ],
)
def test_consent_status_of(data: dict[str, Any], status: str) -> None:
    assert consent_status_of(data) == status


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(r4(lambda d: d.update(status="not-done")), id="r5 code in r4"),
        pytest.param(r4(lambda d: d.pop("status")), id="missing"),
        pytest.param(r4(lambda d: d.update(status=["active"])), id="not a string"),
    ],
)
def test_consent_status_of_refuses_unknown_codes(data: dict[str, Any]) -> None:
    with pytest.raises(InvalidResource) as raised:
        consent_status_of(data)
    assert raised.value.expression == "Consent.status"


def test_parsing_does_not_change_its_input() -> None:
    data = leap()
    before = copy.deepcopy(data)
    parse_consent(data)
    assert data == before


# --- whatever arrives, intake answers with a record or InvalidResource ----------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=12) | st.sampled_from(["permit", "deny", "2024"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


def paths(node: object, prefix: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    found = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            found += paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += paths(value, (*prefix, index))
    return found


@settings(max_examples=300, deadline=None, database=None)
@given(st.sampled_from([leap, leap_as_r5]), st.data(), json_values)
def test_any_damaged_consent_gives_a_record_or_invalid_resource(
    source: Callable[[], dict[str, Any]], data: st.DataObject, value: object
) -> None:
    document = source()
    where = data.draw(st.sampled_from(paths(document)))
    parent: Any = document
    for step in where[:-1]:
        parent = parent[step]
    parent[where[-1]] = value

    outcome: ConsentRecord | InvalidResource
    try:
        outcome = parse_consent(document)
    except InvalidResource as refused:
        outcome = refused
    if isinstance(outcome, InvalidResource):
        assert (outcome.expression or "").startswith("Consent"), outcome.diagnostics
    else:
        assert isinstance(outcome, ConsentRecord)


ASSIGNED_PEER_CONCEPT = {"coding": [{"system": ASSIGNED_PEER_ROLE.system, "code": ASSIGNED_PEER_ROLE.code}]}


@pytest.mark.parametrize(
    "reference", [{"display": "the client's assigned peer supporter"}, {"identifier": {"value": "x"}}]
)
def test_the_assigned_peer_role_may_name_no_one_in_advance(reference: dict[str, Any]) -> None:
    # R4 makes actor.reference 1..1: the Reference is there, but names nobody in particular.
    actor: dict[str, Any] = {"role": ASSIGNED_PEER_CONCEPT, "reference": reference}
    record = parse_consent(r4(lambda c: c["provision"].update(actor=[actor])))
    assert record.provision is not None
    assert record.provision.actors == (ActorRule(ASSIGNED_PEER_ROLE, None),)


def test_any_other_role_without_a_reference_is_refused_rather_than_widened() -> None:
    actor = {"role": IRCP_CONCEPT, "reference": {"display": "Dr Somebody"}}
    with pytest.raises(InvalidResource) as refused:
        parse_consent(r4(lambda c: c["provision"].update(actor=[actor])))
    assert refused.value.expression == "Consent.provision.actor[0].reference"
