"""The unit of work: one database transaction per use case, with the repositories it hands out.

On a normal exit it saves every aggregate it handed out, hands their domain events to the handlers it was built
with (they write outbox rows and notifications through the same session), and commits: a change and what it
announces are stored together or not at all. Any exception rolls everything back.

`retrying` runs a unit of work again when a concurrent transaction created the same row first (a unique
constraint): the second attempt finds that row and goes on from it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Any, Self, TypeVar

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, AsyncSessionTransaction

from service.domain.episode import DomainEvent
from service.store.db import SessionFactory, sqlite_writer
from service.store.episodes import EpisodeRepository

T = TypeVar("T")
Handler = Callable[[AsyncSession, Any], Awaitable[None]]
ATTEMPTS = 3


class UnitOfWork:
    session: AsyncSession
    episodes: EpisodeRepository

    def __init__(self, sessions: SessionFactory, handlers: Mapping[type, Handler]) -> None:
        self._sessions = sessions
        self._handlers = handlers
        self._transaction: AsyncSessionTransaction | None = None
        self._turn = AsyncExitStack()
        self._held: list[object] = []

    async def __aenter__(self) -> Self:
        await self._turn.enter_async_context(sqlite_writer(self._sessions))  # SQLite: one writer at a time
        self.session = self._sessions()
        try:
            self._transaction = await self.session.begin()
        except BaseException:
            await self.session.close()
            await self._turn.aclose()
            raise
        self.episodes = EpisodeRepository(self.session)
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        assert self._transaction is not None
        try:
            if kind is None:
                await self._publish()
                await self._transaction.commit()
            else:
                await self._transaction.rollback()
        finally:
            try:
                await self.session.close()
            finally:
                await self._turn.aclose()

    def hold(self, row: object) -> None:
        """Keep a row this transaction read or wrote in the session until it ends. The session holds unchanged
        rows weakly: without this, a handler asking for the row again would read it back from the database."""
        self._held.append(row)

    async def _publish(self) -> None:
        """Save the aggregates and handle their events until none is left (a handler may change others)."""
        for _ in range(10):  # handlers do not cascade today; the bound keeps a mistake from looping
            await self.episodes.save()
            events = _unique(self.episodes.take_events())
            if not events:
                return
            for event in events:
                handler = self._handlers.get(type(event))
                if handler is None:
                    raise LookupError(f"no handler for {type(event).__name__}")
                await handler(self.session, event)
        raise RuntimeError("domain events kept coming after ten rounds")


def _unique(events: list[DomainEvent]) -> list[DomainEvent]:
    """Each event once per transaction (an assignment ending and another beginning change one CareTeam)."""
    return list(dict.fromkeys(events))


async def retrying(work: Callable[[], Awaitable[T]], *, settled: Callable[[], Awaitable[T | None]] | None = None) -> T:
    """Run `work` (one unit of work) again when a concurrent transaction inserted the same row first.

    `settled`, when given, is asked after such a conflict whether the other transaction already did this very
    work (a replayed message): its answer is returned instead of trying again.
    """
    for attempt in range(ATTEMPTS):
        try:
            return await work()
        except IntegrityError:
            if settled is not None:
                done = await settled()
                if done is not None:
                    return done
            if attempt == ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")  # pragma: no cover
