"""Recording Consents: R5 ones are taken like R4 ones and stored about Peerway's client; a Consent naming a code
that would match nothing is refused with the element named, and nothing is stored."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

import fhir_profiles
from service.auth import Role
from tests.conftest import fixture_json
from tests.support.consents import FHIR_TYPES, as_r5, peer_consent
from tests.support.flow import DISCHARGE, discharged_client_with_peer

Auth = Callable[..., dict[str, str]]
LEAP = "consent/leap-cds-r4-consent-permit-with-deny-R-label.json"


def ehr_patient() -> str:
    """The EHR's own Patient reference for the client the discharge notification brings in."""
    return f"Patient/{fixture_json(DISCHARGE)['entry'][2]['resource']['id']}"


def leap(patient: str) -> dict[str, Any]:
    """The LEAP consent (permit all, deny restricted data to Organization/54) about `patient`, still in force."""
    data = fixture_json(LEAP)
    data["patient"] = {"reference": patient, "display": "Betterhalf, Boris"}
    data["provision"]["period"]["end"] = (datetime.now(UTC) + timedelta(days=30)).date().isoformat()
    return data


async def shared(client: httpx.AsyncClient, auth: Auth, client_id: str, peer_id: str) -> list[str]:
    response = await client.get(f"/fhir/Patient/{client_id}/$peer-summary", headers=auth(Role.PEER, peer_id))
    assert response.status_code == 200, response.text
    return sorted(e["resource"]["resourceType"] for e in response.json().get("entry", []))


async def consents_of(client: httpx.AsyncClient, auth: Auth, patient: str) -> list[dict[str, Any]]:
    response = await client.get("/fhir/Consent", params={"patient": patient}, headers=auth(Role.COORDINATOR))
    assert response.status_code == 200, response.text
    return [e["resource"] for e in response.json().get("entry", [])]


async def test_an_r5_consent_naming_the_ehrs_patient_is_kept_about_the_client_and_decides(
    client: httpx.AsyncClient, auth: Auth
) -> None:
    episode, peer = await discharged_client_with_peer(client, auth)
    assert await shared(client, auth, episode["client_id"], peer["id"]) == []
    consent = as_r5(leap(ehr_patient()))

    response = await client.post("/fhir/Consent", json=consent, headers=auth(Role.EHR_SYSTEM))

    assert response.status_code == 201, response.text
    stored = response.json()
    assert stored["subject"] == {"reference": episode["patient"], "display": "Betterhalf, Boris"}
    assert "patient" not in stored  # still an R5 resource
    assert stored["decision"] == "permit"
    assert await consents_of(client, auth, episode["patient"]) == [stored]
    # The LEAP consent permits everyone everything but restricted data to Organization/54.
    assert await shared(client, auth, episode["client_id"], peer["id"]) == ["Encounter", "Patient"]


async def test_an_r5_permit_of_encounters_releases_the_stay_and_nothing_else(
    client: httpx.AsyncClient, auth: Auth
) -> None:
    episode, peer = await discharged_client_with_peer(client, auth)
    consent = as_r5(peer_consent(episode["patient"], []))
    [permit] = consent["provision"]
    del permit["code"]
    permit["resourceType"] = [{"system": FHIR_TYPES, "code": "Encounter"}]

    response = await client.post("/fhir/Consent", json=consent, headers=auth(Role.COORDINATOR))

    assert response.status_code == 201, response.text
    assert await shared(client, auth, episode["client_id"], peer["id"]) == ["Encounter"]
    sharing = await client.get(f"/api/clients/{episode['client_id']}/sharing", headers=auth(Role.COORDINATOR))
    found = {c["category"]: c for c in sharing.json()["categories"]}
    assert found["admission-discharge"]["shared"] is True
    assert found["admission-discharge"]["provision"] == "provision.provision[0]"
    assert found["preferred-name"]["shared"] is False


async def test_an_r5_consent_can_be_put_and_withdrawn(client: httpx.AsyncClient, auth: Auth) -> None:
    episode, peer = await discharged_client_with_peer(client, auth)
    consent = as_r5(peer_consent(ehr_patient(), ["preferred-name"])) | {"id": "r5-name"}
    url = "/fhir/Consent/r5-name"

    created = await client.put(url, json=consent, headers=auth(Role.EHR_SYSTEM))
    assert created.status_code == 201, created.text
    assert created.json()["subject"]["reference"] == episode["patient"]
    assert await shared(client, auth, episode["client_id"], peer["id"]) == ["Patient"]

    withdrawn = await client.put(url, json=consent | {"status": "inactive"}, headers=auth(Role.EHR_SYSTEM))
    assert withdrawn.status_code == 200, withdrawn.text
    assert withdrawn.json()["meta"]["versionId"] == "2"
    assert await shared(client, auth, episode["client_id"], peer["id"]) == []


async def test_a_deny_naming_an_unknown_category_is_refused_and_nothing_is_stored(
    client: httpx.AsyncClient, auth: Auth
) -> None:
    episode, peer = await discharged_client_with_peer(client, auth)
    consent = leap(episode["patient"])
    deny = consent["provision"]["provision"][0]
    deny["code"] = [{"coding": [{"system": fhir_profiles.DATA_CATEGORY_SYSTEM, "code": "diagnoses"}]}]

    response = await client.post("/fhir/Consent", json=consent, headers=auth(Role.COORDINATOR))

    assert response.status_code == 422
    [issue] = response.json()["issue"]
    assert issue["expression"] == ["Consent.provision.provision[0].code[0].coding[0]"]
    assert "diagnoses" in issue["diagnostics"]
    assert await consents_of(client, auth, episode["patient"]) == []
    assert await shared(client, auth, episode["client_id"], peer["id"]) == []


def without_subject(consent: dict[str, Any]) -> None:
    del consent["subject"]


def subject_of_nobody(consent: dict[str, Any]) -> None:
    consent["subject"] = {"reference": "Patient/not-a-client"}


def subject_as_r4_patient(consent: dict[str, Any]) -> None:
    consent["patient"] = consent.pop("subject")


@pytest.mark.parametrize(
    ("change", "expression"),
    [
        pytest.param(without_subject, "Consent.subject", id="no subject"),
        pytest.param(subject_of_nobody, "Consent.subject", id="not a client"),
        pytest.param(subject_as_r4_patient, "Consent.patient", id="R4's patient in an R5 consent"),
    ],
)
async def test_an_r5_consent_must_name_a_client_in_subject(
    client: httpx.AsyncClient, auth: Auth, change: Callable[[dict[str, Any]], None], expression: str
) -> None:
    episode, _ = await discharged_client_with_peer(client, auth)
    consent = as_r5(peer_consent(episode["patient"], ["preferred-name"]))
    change(consent)

    response = await client.post("/fhir/Consent", json=consent, headers=auth(Role.COORDINATOR))

    assert response.status_code == 422, response.text
    assert response.json()["issue"][0]["expression"] == [expression]
    assert await consents_of(client, auth, episode["patient"]) == []


def period_end_as_number(consent: dict[str, Any]) -> None:
    consent["provision"]["period"]["end"] = 1893456000  # fhir.resources would read it as 2030-01-01


def category_text_as_number(consent: dict[str, Any]) -> None:
    consent["category"][0]["text"] = 59284


def coding_user_selected_as_text(consent: dict[str, Any]) -> None:
    consent["category"][0]["coding"][0]["userSelected"] = "true"


@pytest.mark.parametrize("release", ["R4", "R5"])
@pytest.mark.parametrize(
    ("change", "element"),
    [
        pytest.param(period_end_as_number, r"Consent\.(provision\.)?period\.end", id="a dateTime as a number"),
        pytest.param(category_text_as_number, r"Consent\.category\[\d\]\.text", id="a string as a number"),
        pytest.param(
            coding_user_selected_as_text, r"Consent\.category\[\d\]\.coding\[0\]\.userSelected", id="a boolean as text"
        ),
    ],
)
async def test_a_consent_primitive_in_another_json_type_is_refused_and_nothing_is_shared(
    client: httpx.AsyncClient, auth: Auth, release: str, change: Callable[[dict[str, Any]], None], element: str
) -> None:
    """FHIR JSON gives each primitive one JSON type; a Consent with another is refused naming the element (by the
    consent parser where it reads the element, else by the JSON type check), and nothing is shared."""
    episode, peer = await discharged_client_with_peer(client, auth)
    consent = peer_consent(episode["patient"], ["encounters"])
    change(consent)
    if release == "R5":
        consent = as_r5(consent)

    response = await client.post("/fhir/Consent", json=consent, headers=auth(Role.COORDINATOR))

    assert response.status_code in (400, 422), response.text
    [issue] = response.json()["issue"]
    assert re.fullmatch(element, issue["expression"][0]), issue  # R5's category[0] is R4's scope
    assert "1893456000" not in response.text  # the value is not echoed (a date may be PHI)
    assert "59284" not in response.text
    assert await consents_of(client, auth, episode["patient"]) == []
    assert await shared(client, auth, episode["client_id"], peer["id"]) == []
