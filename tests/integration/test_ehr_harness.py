"""The Node test EHR behaves like a real FHIR server where our tests rely on it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.ehr import TestEhr, run_test_ehr

pytestmark = pytest.mark.ehr

FHIR_JSON = "application/fhir+json"
IDENTIFIER_SYSTEM = "urn:oid:1.2.36.146.595.217.0.1"


@pytest.fixture(scope="module")
def ehr() -> Iterator[TestEhr]:
    with run_test_ehr() as server:
        yield server


@pytest.fixture
def fhir(ehr: TestEhr) -> Iterator[httpx.Client]:
    ehr.reset()
    with httpx.Client(
        base_url=ehr.base_url,
        headers={"Accept": FHIR_JSON, "Content-Type": FHIR_JSON},
        timeout=30.0,
        trust_env=False,
    ) as client:
        yield client


def encounter(enc_id: str | None, *, status: str = "finished", value: str = "V1") -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Encounter",
        "identifier": [{"system": IDENTIFIER_SYSTEM, "value": value}],
        "status": status,
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
        "subject": {"reference": "Patient/p1"},
        "period": {"start": "2025-01-02T10:00:00Z", "end": "2025-01-09T12:00:00Z"},
    }
    if enc_id is not None:
        resource["id"] = enc_id
    return resource


def put(client: httpx.Client, resource: dict[str, Any]) -> httpx.Response:
    return client.put(f"/{resource['resourceType']}/{resource['id']}", content=json.dumps(resource))


def test_put_with_chosen_id_creates_then_updates(ehr: TestEhr, fhir: httpx.Client) -> None:
    first = put(fhir, encounter("enc-1"))
    assert first.status_code == 201, first.text
    assert first.headers["content-type"].startswith(FHIR_JSON)
    assert first.headers["location"].startswith(f"{ehr.base_url}/Encounter/enc-1/_history/")
    created = first.json()
    assert created["id"] == "enc-1"

    second = put(fhir, encounter("enc-1"))
    assert second.status_code == 200, second.text
    assert second.json()["meta"]["versionId"] != created["meta"]["versionId"]

    found = ehr.search("Encounter", identifier=f"{IDENTIFIER_SYSTEM}|V1")
    assert [r["id"] for r in found] == ["enc-1"]
    assert ehr.count("Encounter") == 1

    # the same search over plain FHIR REST
    bundle = fhir.get("/Encounter", params={"identifier": f"{IDENTIFIER_SYSTEM}|V1"}).json()
    assert bundle["type"] == "searchset"
    assert bundle["total"] == 1
    assert bundle["entry"][0]["fullUrl"] == f"{ehr.base_url}/Encounter/enc-1"


@pytest.mark.parametrize(
    ("mutate", "expression"),
    [
        pytest.param(lambda r: r.update(status="done"), "Encounter.status", id="status-done"),
        pytest.param(lambda r: r.pop("class"), "Encounter.class", id="missing-class"),
        pytest.param(lambda r: r.update(period={"start": "yesterday"}), "Encounter.period.start", id="bad-date"),
    ],
)
def test_invalid_encounter_is_refused_and_not_stored(
    ehr: TestEhr, fhir: httpx.Client, mutate: Any, expression: str
) -> None:
    resource = encounter("enc-bad")
    mutate(resource)

    response = put(fhir, resource)
    assert 400 <= response.status_code < 500, response.text
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert any(expression in issue.get("expression", []) for issue in outcome["issue"]), outcome
    assert all(issue["severity"] == "error" for issue in outcome["issue"])

    created = fhir.post("/Encounter", content=json.dumps(resource))
    assert 400 <= created.status_code < 500

    assert ehr.read("Encounter", "enc-bad") is None
    assert ehr.count("Encounter") == 0


def test_fault_503_with_retry_after_then_clears(ehr: TestEhr, fhir: httpx.Client) -> None:
    ehr.fault(status=503, count=2, retryAfter=2)
    for _ in range(2):
        response = fhir.get("/Encounter/missing")
        assert response.status_code == 503
        assert response.headers["retry-after"] == "2"
        assert response.json()["resourceType"] == "OperationOutcome"
    assert fhir.get("/Encounter/missing").status_code == 404

    ehr.fault(status=500, count=5)
    ehr.clear_faults()
    assert fhir.get("/Encounter/missing").status_code == 404


def test_close_fault_drops_the_connection(fhir: httpx.Client, ehr: TestEhr) -> None:
    ehr.fault(mode="close", count=1)
    with pytest.raises(httpx.TransportError):
        put(fhir, encounter("enc-1"))
    assert put(fhir, encounter("enc-1")).status_code == 201
    assert [r["status"] for r in ehr.requests()] == [None, 201]


def test_request_log_records_what_happened(ehr: TestEhr, fhir: httpx.Client) -> None:
    auth = {"Authorization": "Bearer abc"}
    put(fhir, encounter("enc-1"))
    fhir.put("/Encounter/enc-2", content=json.dumps(encounter("enc-2", status="done")), headers=auth)
    ehr.fault(status=429, count=1)
    fhir.get("/Encounter", params={"identifier": "x|y"})
    fhir.get("/Encounter", params={"identifier": "x|y"})
    ehr.search("Encounter")  # the harness's own look-ups are not logged

    logged = ehr.requests()
    assert {(e["contentType"], e["accept"]) for e in logged} == {(FHIR_JSON, FHIR_JSON)}
    assert [{k: e[k] for k in ("method", "path", "status", "authorization")} for e in logged] == [
        {"method": "PUT", "path": "/fhir/Encounter/enc-1", "status": 201, "authorization": None},
        {"method": "PUT", "path": "/fhir/Encounter/enc-2", "status": 400, "authorization": "Bearer abc"},
        {"method": "GET", "path": "/fhir/Encounter?identifier=x%7Cy", "status": 429, "authorization": None},
        {"method": "GET", "path": "/fhir/Encounter?identifier=x%7Cy", "status": 200, "authorization": None},
    ]
    ehr.reset()
    assert ehr.requests() == []


def test_conditional_create_with_if_none_exist(fhir: httpx.Client, ehr: TestEhr) -> None:
    headers = {"If-None-Exist": f"identifier={IDENTIFIER_SYSTEM}|V7"}
    first = fhir.post("/Encounter", content=json.dumps(encounter(None, value="V7")), headers=headers)
    second = fhir.post("/Encounter", content=json.dumps(encounter(None, value="V7")), headers=headers)
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["id"] == second.json()["id"]
    assert ehr.count("Encounter") == 1


def test_transaction_is_atomic_and_search_follows_paging(fhir: httpx.Client, ehr: TestEhr) -> None:
    def bundle(*statuses: str) -> dict[str, Any]:
        return {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {
                    "request": {"method": "PUT", "url": f"Encounter/t{i}"},
                    "resource": encounter(f"t{i}", status=s),
                }
                for i, s in enumerate(statuses)
            ],
        }

    refused = fhir.post("", content=json.dumps(bundle("finished", "finished", "done")))
    assert refused.status_code == 400
    assert ehr.count("Encounter") == 0

    accepted = fhir.post("", content=json.dumps(bundle(*["finished"] * 5)))
    assert accepted.status_code == 200, accepted.text
    assert [e["response"]["status"] for e in accepted.json()["entry"]] == ["201 Created"] * 5

    assert len(ehr.search("Encounter", _count="2")) == 5
    page = fhir.get("/Encounter", params={"_count": "2"}).json()
    assert page["total"] == 5
    assert len(page["entry"]) == 2
    assert any(link["relation"] == "next" for link in page["link"])


def test_bearer_token_required_when_configured() -> None:
    with (
        run_test_ehr(env={"EHR_REQUIRE_BEARER": "s3cret"}) as ehr,
        httpx.Client(base_url=ehr.base_url, trust_env=False) as client,
    ):
        missing = client.get("/Encounter")
        assert missing.status_code == 401
        assert missing.json()["resourceType"] == "OperationOutcome"
        assert client.get("/Encounter", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.get("/Encounter", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert client.get("/metadata").status_code == 200
        assert [r["status"] for r in ehr.requests()] == [401, 401, 200, 200]


REPO_PROFILES_DIR = Path(__file__).resolve().parents[2] / "fhir_profiles" / "data"
CONFORMANCE_TYPES = {
    "StructureDefinition",
    "ValueSet",
    "CodeSystem",
    "NamingSystem",
    "ImplementationGuide",
    "OperationDefinition",
    "SearchParameter",
}


def test_our_profiles_load_and_our_examples_conform() -> None:
    """Every example instance in fhir_profiles/data is accepted under the profiles of that directory."""
    files = [json.loads(path.read_text()) for path in sorted(REPO_PROFILES_DIR.glob("*.json"))]
    examples = [r for r in files if r.get("resourceType") not in CONFORMANCE_TYPES]
    with (
        run_test_ehr(profiles_dir=REPO_PROFILES_DIR) as ehr,
        httpx.Client(base_url=ehr.base_url, headers={"Content-Type": FHIR_JSON}, trust_env=False) as client,
    ):
        assert "cannot place" not in ehr.server_log()
        for example in examples:
            response = put(client, example)
            assert response.status_code == 201, response.text


PROFILE_URL = "https://peerway.test/fhir/StructureDefinition/discharge-encounter"


def test_profiles_dir_enforces_our_profile(tmp_path: Path) -> None:
    profile = {
        "resourceType": "StructureDefinition",
        "url": PROFILE_URL,
        "name": "DischargeEncounter",
        "status": "active",
        "fhirVersion": "4.0.1",
        "kind": "resource",
        "abstract": False,
        "type": "Encounter",
        "baseDefinition": "http://hl7.org/fhir/StructureDefinition/Encounter",
        "derivation": "constraint",
        "differential": {  # differential only: the harness builds the snapshot
            "element": [
                {"id": "Encounter", "path": "Encounter"},
                {"id": "Encounter.identifier", "path": "Encounter.identifier", "min": 1},
                {"id": "Encounter.status", "path": "Encounter.status", "patternCode": "finished"},
                {"id": "Encounter.hospitalization", "path": "Encounter.hospitalization", "min": 1},
                {
                    "id": "Encounter.hospitalization.dischargeDisposition",
                    "path": "Encounter.hospitalization.dischargeDisposition",
                    "min": 1,
                },
            ]
        },
    }
    (tmp_path / "discharge-encounter.json").write_text(json.dumps(profile))
    (tmp_path / "ig.json").write_text(json.dumps({"resourceType": "ImplementationGuide", "id": "x"}))

    def with_profile(resource: dict[str, Any]) -> dict[str, Any]:
        return {**resource, "meta": {"profile": [PROFILE_URL]}}

    disposition = {"dischargeDisposition": {"coding": [{"code": "home"}]}}
    with (
        run_test_ehr(profiles_dir=tmp_path) as ehr,
        httpx.Client(base_url=ehr.base_url, headers={"Content-Type": FHIR_JSON}, trust_env=False) as client,
    ):
        good = with_profile({**encounter("ok"), "hospitalization": disposition})
        assert put(client, good).status_code == 201

        def refused_at(resource: dict[str, Any]) -> list[str]:
            response = put(client, with_profile(resource))
            assert response.status_code == 400, response.text
            return [e for issue in response.json()["issue"] for e in issue.get("expression", [])]

        assert refused_at(encounter("no-hospitalization")) == ["Encounter.hospitalization"]
        # a constraint below the top level, which Medplum's own validator does not apply
        no_disposition = {**encounter("no-disposition"), "hospitalization": {"reAdmission": {"text": "no"}}}
        assert refused_at(no_disposition) == ["Encounter.hospitalization.dischargeDisposition"]

        planned = {**encounter("planned", status="planned"), "hospitalization": disposition}
        assert refused_at(planned) == ["Encounter.status"]
        assert ehr.count("Encounter") == 1

        # without meta.profile only the base R4 rules apply
        assert put(client, encounter("no-claim", status="planned")).status_code == 201
