"""The client's own answers next to the hospital's data: a contact-times answer adds to the Patient's contact
details, never hides them; a valueCoding that is not a Coding is refused naming the element."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from service.auth import Role
from service.fhir.answers import QUESTIONNAIRE
from tests.support.consents import peer_consent
from tests.support.flow import discharged_client_with_peer

Auth = Callable[..., dict[str, str]]


def answers(client_id: str, *items: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "QuestionnaireResponse",
        "questionnaire": QUESTIONNAIRE,
        "status": "completed",
        "subject": {"reference": f"Patient/{client_id}"},
        "item": list(items),
    }


async def test_a_contact_times_answer_keeps_the_patients_own_contact_details_shown(
    client: httpx.AsyncClient, auth: Auth
) -> None:
    episode, peer = await discharged_client_with_peer(client, auth)
    consent = peer_consent(episode["patient"], ["contact-details"], actor=peer["practitioner"])
    assert (await client.post("/fhir/Consent", json=consent, headers=auth(Role.COORDINATOR))).status_code == 201
    times = {"linkId": "contact-times", "answer": [{"valueString": "Weekday afternoons"}]}
    recorded = await client.post(
        "/fhir/QuestionnaireResponse", json=answers(episode["client_id"], times), headers=auth(Role.COORDINATOR)
    )
    assert recorded.status_code == 201, recorded.text

    summary = await client.get(
        f"/fhir/Patient/{episode['client_id']}/$peer-summary", headers=auth(Role.PEER, peer["id"])
    )
    shown = {e["resource"]["resourceType"]: e["resource"] for e in summary.json()["entry"]}
    assert shown["QuestionnaireResponse"]["item"][0]["answer"] == [{"valueString": "Weekday afternoons"}]
    assert shown["Patient"]["telecom"]  # the phone from the hospital's notification, still there


async def test_a_value_coding_that_is_no_coding_is_refused_naming_it(client: httpx.AsyncClient, auth: Auth) -> None:
    episode, _ = await discharged_client_with_peer(client, auth)
    for bad in ("by phone", {"code": {"nested": 1}}, {"extension": [{"url": "x"}], "code": "phone"}, {}):
        item = {"linkId": "contact-ways", "answer": [{"valueCoding": bad}]}
        refused = await client.post(
            "/fhir/QuestionnaireResponse", json=answers(episode["client_id"], item), headers=auth(Role.COORDINATOR)
        )
        assert refused.status_code == 422, bad
        assert refused.json()["issue"][0]["expression"] == ["QuestionnaireResponse.item[0].answer[0].valueCoding"]
    good = {"linkId": "contact-ways", "answer": [{"valueCoding": {"code": "phone", "display": "Phone"}}]}
    recorded = await client.post(
        "/fhir/QuestionnaireResponse", json=answers(episode["client_id"], good), headers=auth(Role.COORDINATOR)
    )
    assert recorded.status_code == 201, recorded.text
