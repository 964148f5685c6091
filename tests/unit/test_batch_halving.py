"""Batch write mode when the EHR refuses a batch as too large (413): service/workers/writeback.py sends it again in
halves, stops sending batches once the site is written one Encounter at a time, and sends no half into an outage
the other half met. The EHR here is a stand-in answering each batch request as a list says."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any, cast

from service.ehr.client import EhrClient
from service.ehr.connection import WriteMode
from service.errors import UpstreamError
from service.settings import Settings
from service.store.db import SessionFactory
from service.workers.writeback import BATCH_ENTRIES, UNBATCHED_SECONDS, Writer


class Answers:
    """Answers batch requests in turn: a status to refuse the whole request with, or None to write every entry."""

    def __init__(self, *statuses: int | None, then: int | None = None) -> None:
        self.statuses = list(statuses)
        self.then = then
        self.sizes: list[int] = []  # each request's entries

    async def put_batch(self, resources: Sequence[dict[str, Any]]) -> list[UpstreamError | None]:
        self.sizes.append(len(resources))
        status = self.statuses.pop(0) if self.statuses else self.then
        if status is not None:
            raise UpstreamError(f"HTTP {status}", http_status=status, retry_after=120)
        return [None] * len(resources)

    async def write_target(self, site: str) -> tuple[EhrClient, WriteMode]:
        return cast(EhrClient, self), "batch"


async def sent(answers: Answers, n: int) -> tuple[Writer, list[str]]:
    writer = Writer(cast(SessionFactory, None), answers, Settings(_env_file=None))
    entries = [(f"c{i}", {"resourceType": "Encounter", "id": f"c{i}"}, None) for i in range(n)]
    await writer._send_batch("s", cast(EhrClient, answers), entries, Counter(e[0] for e in entries))
    return writer, [e[0] for e in entries]


def recorded(writer: Writer, contacts: list[str]) -> list[int | None]:
    """Each contact's kept answer: its status, None when written, -1 when nothing is kept (it writes on its own)."""
    kept = [writer._batched.get(c) for c in contacts]
    return [-1 if not k else (k[0][0].http_status if k[0][0] is not None else None) for k in kept]


async def test_the_halves_of_a_batch_too_large_are_written_and_the_next_batches_are_that_size() -> None:
    answers = Answers(413)
    writer, contacts = await sent(answers, 20)
    assert answers.sizes == [20, 10, 10]
    assert recorded(writer, contacts) == [None] * 20
    assert writer._batch_size("s") == 10


async def test_an_ehr_refusing_every_batch_as_too_large_costs_one_request_per_halving_not_one_per_entry() -> None:
    answers = Answers(then=413)
    writer, contacts = await sent(answers, 100)
    assert answers.sizes == [100, 50, 25, 13, 7, 4, 2, 1]  # then the site is written one Encounter at a time
    assert recorded(writer, contacts) == [-1] * 100
    assert writer._unbatched["s"] > 0


async def test_a_half_refused_as_a_request_leaves_the_other_half_to_its_jobs_too() -> None:
    answers = Answers(413, 401)
    writer, contacts = await sent(answers, 4)
    assert answers.sizes == [4, 2]
    assert recorded(writer, contacts) == [-1] * 4


async def test_a_half_met_by_an_outage_sends_no_other_half_into_it() -> None:
    answers = Answers(413, 503)
    writer, contacts = await sent(answers, 4)
    assert answers.sizes == [4, 2]
    assert recorded(writer, contacts) == [503] * 4  # each job waits as the EHR asks


async def test_the_smaller_size_lasts_only_a_while() -> None:
    now = [0.0]
    answers = Answers(413)
    writer = Writer(cast(SessionFactory, None), answers, Settings(_env_file=None), clock=lambda: now[0])
    entries = [(f"c{i}", {"resourceType": "Encounter", "id": f"c{i}"}, None) for i in range(8)]
    await writer._send_batch("s", cast(EhrClient, answers), entries, Counter(e[0] for e in entries))
    assert writer._batch_size("s") == 4
    now[0] += UNBATCHED_SECONDS
    assert writer._batch_size("s") == BATCH_ENTRIES
