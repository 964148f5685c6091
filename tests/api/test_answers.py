"""The client's own answers (Peerway's client-background Questionnaire): served at its canonical URL, recorded by
a coordinator, shared part by part under their own categories, and the same interests used for matching."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from service.auth import Role
from service.fhir.answers import QUESTIONNAIRE
from tests.support.consents import peer_consent
from tests.support.flow import discharged_client_with_peer

Auth = Callable[..., dict[str, str]]


def response_for(client_id: str) -> dict[str, Any]:
    return {
        "resourceType": "QuestionnaireResponse",
        "questionnaire": QUESTIONNAIRE,
        "status": "completed",
        "subject": {"reference": f"Patient/{client_id}"},
        "item": [
            {"linkId": "interests", "answer": [{"valueString": "Old movies"}, {"valueString": "Gardening"}]},
            {"linkId": "own-goals", "answer": [{"valueString": "Get back to the bakery, two days a week"}]},
            {"linkId": "contact-times", "answer": [{"valueString": "Weekday afternoons"}]},
            {"linkId": "meet-safely", "answer": [{"valueString": "Knock loudly: the dog barks, he is friendly"}]},
        ],
    }


async def test_the_questionnaire_is_served_at_its_canonical_url(client: httpx.AsyncClient) -> None:
    found = (await client.get("/fhir/Questionnaire", params={"url": QUESTIONNAIRE})).json()
    [entry] = found["entry"]
    assert [i["linkId"] for i in entry["resource"]["item"]] == [
        "interests",
        "own-goals",
        "contact-times",
        "contact-ways",
        "meet-safely",
    ]


async def test_answers_are_shared_only_under_their_own_categories_and_feed_matching(
    client: httpx.AsyncClient, auth: Auth
) -> None:
    episode, peer = await discharged_client_with_peer(client, auth)
    recorded = await client.post(
        "/fhir/QuestionnaireResponse", json=response_for(episode["client_id"]), headers=auth(Role.COORDINATOR)
    )
    assert recorded.status_code == 201, recorded.text
    consent = peer_consent(episode["patient"], ["interests", "safety-considerations"], actor=peer["practitioner"])
    assert (await client.post("/fhir/Consent", json=consent, headers=auth(Role.COORDINATOR))).status_code == 201

    bundle = (
        await client.get(f"/fhir/Patient/{episode['client_id']}/$peer-summary", headers=auth(Role.PEER, peer["id"]))
    ).json()
    shared = {
        item["linkId"]: [a["valueString"] for a in item["answer"]]
        for entry in bundle["entry"]
        if entry["resource"]["resourceType"] == "QuestionnaireResponse"
        for item in entry["resource"]["item"]
    }
    # Interests and what to know to meet safely; not the goals or contact times the consent does not name.
    assert shared == {
        "interests": ["Old movies", "Gardening"],
        "meet-safely": ["Knock loudly: the dog barks, he is friendly"],
    }
    preferences = await client.get(f"/api/episodes/{episode['id']}/preferences", headers=auth(Role.COORDINATOR))
    assert preferences.json()["interests"] == ["Old movies", "Gardening"]


async def test_an_answer_to_another_questionnaire_is_refused_naming_the_element(
    client: httpx.AsyncClient, auth: Auth
) -> None:
    episode, _ = await discharged_client_with_peer(client, auth)
    body = response_for(episode["client_id"]) | {"questionnaire": "http://example.org/Questionnaire/phq-9"}
    refused = await client.post("/fhir/QuestionnaireResponse", json=body, headers=auth(Role.COORDINATOR))
    assert refused.status_code == 422
    assert refused.json()["issue"][0]["expression"] == ["QuestionnaireResponse.questionnaire"]
    body = response_for(episode["client_id"])
    body["item"][0]["linkId"] = "diagnosis"
    refused = await client.post("/fhir/QuestionnaireResponse", json=body, headers=auth(Role.COORDINATOR))
    assert refused.json()["issue"][0]["expression"] == ["QuestionnaireResponse.item[0].linkId"]
