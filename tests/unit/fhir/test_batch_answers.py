"""Reading an EHR's batch-response: one answer per entry, in order, or nothing at all when it cannot be read so
(then the worker writes each resource on its own rather than guess which landed)."""

from __future__ import annotations

from typing import Any

import pytest

from service.fhir.batch import EntryAnswer, batch_answers, put_batch


def asked(count: int) -> list[str]:
    return [f"Encounter/e{k}" for k in range(count)]


OUTCOME = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "invariant"}]}


def response(*statuses: object, **extra: Any) -> dict[str, Any]:
    entries = [
        {"response": {"status": s, **({"outcome": OUTCOME} if s == "400 Bad Request" else {})}} for s in statuses
    ]
    return {"resourceType": "Bundle", "type": "batch-response", "entry": entries, **extra}


def test_an_outcome_sent_as_the_entrys_resource_is_kept() -> None:
    answer = {
        "resourceType": "Bundle",
        "type": "batch-response",
        "entry": [{"resource": OUTCOME, "response": {"status": "422"}}],
    }
    assert batch_answers(answer, asked(1)) == [EntryAnswer(422, OUTCOME)]


def test_each_entry_answered_in_order() -> None:
    answers = batch_answers(response("201 Created", "200", "400 Bad Request"), asked(3))
    assert answers == [EntryAnswer(201), EntryAnswer(200), EntryAnswer(400, OUTCOME)]
    assert [a.written for a in answers] == [True, True, False]


@pytest.mark.parametrize(
    ("answer", "count"),
    [
        (response("201"), 2),  # an entry missing: which one landed is unknown
        (response("201", "201"), 1),
        ({**response("201"), "type": "transaction-response"}, 1),
        ({**response("201"), "resourceType": "OperationOutcome"}, 1),
        (response("Created"), 1),
        (response(201), 1),
        (response("2011"), 1),
        (response("700 Odd"), 1),
        ({"resourceType": "Bundle", "type": "batch-response", "entry": [{"resource": {}}]}, 1),
        ({"resourceType": "Bundle", "type": "batch-response"}, 1),
        ([], 0),
        (None, 0),
    ],
)
def test_an_answer_not_readable_entry_by_entry_is_none(answer: object, count: int) -> None:
    assert batch_answers(answer, asked(count)) is None


def test_the_batch_puts_each_resource_at_its_own_id() -> None:
    resources = [{"resourceType": "Encounter", "id": "a-1"}, {"resourceType": "Encounter", "id": "b 2"}]
    bundle = put_batch(resources, "https://ehr.example/fhir")
    assert bundle["type"] == "batch"
    assert [e["fullUrl"] for e in bundle["entry"]] == [
        "https://ehr.example/fhir/Encounter/a-1",
        "https://ehr.example/fhir/Encounter/b%202",
    ]
    assert [e["request"] for e in bundle["entry"]] == [
        {"method": "PUT", "url": "Encounter/a-1"},
        {"method": "PUT", "url": "Encounter/b%202"},
    ]


def written(location: str | None = None, resource: dict[str, Any] | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"response": {"status": "201 Created", **({"location": location} if location else {})}}
    return entry | ({"resource": resource} if resource else {})


def test_entries_that_say_where_they_wrote_must_say_it_in_order() -> None:
    def answer(*entries: dict[str, Any]) -> list[EntryAnswer] | None:
        return batch_answers({"resourceType": "Bundle", "type": "batch-response", "entry": list(entries)}, asked(2))

    in_order = answer(written("https://ehr.example/fhir/Encounter/e0/_history/2"), written("Encounter/e1/_history/1"))
    assert in_order == [EntryAnswer(201), EntryAnswer(201)]
    assert answer(written(resource={"resourceType": "Encounter", "id": "e0"}), written()) == in_order
    assert answer(written("Encounter/e1/_history/1"), written("Encounter/e0/_history/1")) is None
    assert answer(written(resource={"resourceType": "Encounter", "id": "e1"}), written()) is None
