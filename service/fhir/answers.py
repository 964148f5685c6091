"""The client's own answers (wire -> kept items): a QuestionnaireResponse to Peerway's client-background
Questionnaire, split by data category so that each part is shared only under its own category.

The Questionnaire (fhir_profiles/data/Questionnaire-client-background.json) names each question's category in
`item.code`; the interests are also the client's interests for matching.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import fhir_profiles
from consent import DataCategory
from service.errors import InvalidResource

QUESTIONNAIRE = f"{fhir_profiles.CANONICAL}/Questionnaire/client-background"
CATEGORY_OF = {
    "interests": DataCategory.INTERESTS,
    "own-goals": DataCategory.RECOVERY_GOALS,
    "contact-times": DataCategory.CONTACT_DETAILS,
    "contact-ways": DataCategory.CONTACT_DETAILS,
    "meet-safely": DataCategory.SAFETY_CONSIDERATIONS,
}
_ANSWER_TYPES = {"valueString", "valueCoding"}
MAX_ANSWERS = 20
MAX_TEXT = 2000


@dataclass(frozen=True)
class Answers:
    """A parsed response: the client it is about (Peerway's id) and each answered question's answers."""

    client_id: str
    items: dict[str, list[dict[str, Any]]]  # linkId -> answers (valueString / valueCoding)

    @property
    def interests(self) -> tuple[str, ...]:
        return tuple(a["valueString"] for a in self.items.get("interests", []) if "valueString" in a)


def parse_answers(data: dict[str, Any]) -> Answers:
    """The response, checked against the Questionnaire; a bad element is named."""
    if data.get("resourceType") != "QuestionnaireResponse":
        raise InvalidResource("expected a QuestionnaireResponse", "QuestionnaireResponse")
    if str(data.get("questionnaire", "")).split("|")[0] != QUESTIONNAIRE:
        raise InvalidResource(f"questionnaire must be {QUESTIONNAIRE}", "QuestionnaireResponse.questionnaire")
    if data.get("status") not in {"completed", "amended"}:
        raise InvalidResource("status must be completed or amended", "QuestionnaireResponse.status")
    reference = (data.get("subject") or {}).get("reference") if isinstance(data.get("subject"), dict) else None
    if not isinstance(reference, str) or not reference.startswith("Patient/") or reference.count("/") != 1:
        raise InvalidResource("subject must reference the client as Patient/<id>", "QuestionnaireResponse.subject")
    items: dict[str, list[dict[str, Any]]] = {}
    for n, item in enumerate(data.get("item") or []):
        where = f"QuestionnaireResponse.item[{n}]"
        if not isinstance(item, dict) or item.get("linkId") not in CATEGORY_OF:
            raise InvalidResource("linkId is not a question of the client-background Questionnaire", f"{where}.linkId")
        answers = item.get("answer") or []
        if not isinstance(answers, list) or len(answers) > MAX_ANSWERS:
            raise InvalidResource(f"at most {MAX_ANSWERS} answers", f"{where}.answer")
        kept = []
        for m, answer in enumerate(answers):
            value = {k: v for k, v in answer.items() if k in _ANSWER_TYPES} if isinstance(answer, dict) else {}
            text = value.get("valueString")
            if len(value) != 1 or (text is not None and (not isinstance(text, str) or len(text) > MAX_TEXT)):
                raise InvalidResource("an answer is one valueString or valueCoding", f"{where}.answer[{m}]")
            if "valueCoding" in value:
                value = {"valueCoding": _coding(value["valueCoding"], f"{where}.answer[{m}].valueCoding")}
            kept.append(value)
        items.setdefault(str(item["linkId"]), []).extend(kept)
    return Answers(reference.split("/", 1)[1], items)


def _coding(value: object, where: str) -> dict[str, str]:
    """A Coding as the summary shows it: system, code and display, each a string (no id, no extension), and a
    code or a display at least."""
    parts = ("system", "code", "display")
    if not isinstance(value, dict) or any(k not in parts or not isinstance(v, str) for k, v in value.items()):
        raise InvalidResource("valueCoding is a Coding of system, code and display (strings)", where)
    coding = {k: str(value[k]) for k in parts if value.get(k)}
    if not coding.get("code") and not coding.get("display"):
        raise InvalidResource("valueCoding needs a code or a display", where)
    if any(len(v) > MAX_TEXT for v in coding.values()):
        raise InvalidResource(f"at most {MAX_TEXT} characters", where)
    return coding


def answer_parts(answers: Answers, response_id: str, authored: str) -> list[tuple[DataCategory, dict[str, Any]]]:
    """One QuestionnaireResponse per data category, holding only that category's answers."""
    parts: dict[DataCategory, list[dict[str, Any]]] = {}
    for link_id, values in answers.items.items():
        if values:
            parts.setdefault(CATEGORY_OF[link_id], []).append({"linkId": link_id, "answer": values})
    return [
        (
            category,
            {
                "resourceType": "QuestionnaireResponse",
                "id": f"{response_id}-{category.value}",
                "questionnaire": QUESTIONNAIRE,
                "status": "completed",
                "subject": {"reference": f"Patient/{answers.client_id}"},
                "authored": authored,
                "item": items,
            },
        )
        for category, items in parts.items()
    ]
