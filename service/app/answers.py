"""The client's own answers to Peerway's client-background Questionnaire, recorded by a coordinator: kept as
background items per data category (each shared only under its category, like the EHR's), and the interests
also become the client's interests for matching, so the matching profile and the summary read the same answers.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from service.app import profiles
from service.app.clock import new_id, utcnow
from service.errors import InvalidResource
from service.fhir.answers import answer_parts, parse_answers
from service.fhir.build import fhir_instant
from service.store import background, repository
from service.store.db import SessionFactory, transaction
from service.store.matching import ClientPreference

SOURCE = "QuestionnaireResponse"


async def record_answers(sessions: SessionFactory, site: str, data: dict[str, Any]) -> dict[str, Any]:
    """Store the response (replacing the client's earlier one) and answer it as stored, with Peerway's id."""
    answers = parse_answers(data)
    now = utcnow()
    response_id = new_id()
    async with transaction(sessions) as session:
        client = await repository.client_at(session, site, answers.client_id)
        episode = await repository.current_episode(session, answers.client_id) if client is not None else None
        if client is None or episode is None:
            raise InvalidResource(f"no client Patient/{answers.client_id}", "QuestionnaireResponse.subject")
        await background.forget_source(session, client.id, SOURCE)
        for category, part in answer_parts(answers, response_id, fhir_instant(now)):
            session.add(
                background.BackgroundItem(
                    id=part["id"],
                    client_id=client.id,
                    category=category.value,
                    source=f"{SOURCE}/{response_id}",
                    resource_json=json.dumps(part, separators=(",", ":")),
                    labels_json="[]",
                    data_date=now,
                    fetched_at=now,
                )
            )
        preferences = await profiles.preferences_of(session, episode.id, client.id)
        stored = await session.get(ClientPreference, episode.id)
        if stored is None:
            stored = ClientPreference(episode_id=episode.id)
            session.add(stored)
        stored.preference_json = profiles.preferences_to_json(replace(preferences, interests=answers.interests))
        stored.updated_at = now
    out = {k: v for k, v in data.items() if k not in {"id", "meta"}}
    return {"resourceType": "QuestionnaireResponse", "id": response_id, **out, "authored": fhir_instant(now)}
