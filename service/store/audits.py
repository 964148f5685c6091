"""Audit rows written by group commit: the rows of concurrent reads share one transaction and one commit.

A read that discloses must not answer before its audit row is committed. Committing one row per read makes every
read wait for its own commit (on SQLite, one at a time behind the single writer); here a read hands its row over
and waits until the transaction holding it has committed. Rows that arrive while a commit is under way go into
the next one, so under load a commit carries many rows and idle reads still commit at once: no timer, no delay.
If the commit fails, every read whose row it held gets the error (and discloses nothing).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Mapping
from typing import Any

from service.store.db import SessionFactory, engine_of, sqlite_writer
from service.store.direct import DirectInsert
from service.store.models import AuditRecord, table_of

# One driver call per batch, its own transaction (service/store/direct.py).
_INSERT = DirectInsert(table_of(AuditRecord))
_Pending = list[tuple[dict[str, Any], asyncio.Future[None]]]


class _GroupCommit:
    """One per session factory and event loop: the rows waiting, and the task committing them."""

    def __init__(self, sessions: SessionFactory) -> None:
        self.sessions = sessions
        self.pending: _Pending = []
        self.task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        batch: _Pending = []
        try:
            while self.pending:
                batch, self.pending = self.pending, []
                try:
                    async with sqlite_writer(self.sessions):  # this process's SQLite write turn
                        await _INSERT.insert_many(engine_of(self.sessions), [row for row, _ in batch])
                except Exception as error:  # handed to each waiting read, which raises it
                    _settle(batch, error)
                else:
                    _settle(batch, None)
        except BaseException as error:  # cancelled (the loop is closing): no read waits forever
            _settle(batch + self.pending, error)
            self.pending = []
            raise
        finally:
            self.task = None


def _settle(batch: _Pending, error: BaseException | None) -> None:
    for _, done in batch:
        if done.done():
            continue
        if error is None:
            done.set_result(None)
        else:
            done.set_exception(error)


_groups: weakref.WeakKeyDictionary[SessionFactory, dict[asyncio.AbstractEventLoop, _GroupCommit]] = (
    weakref.WeakKeyDictionary()
)


async def append(sessions: SessionFactory, row: Mapping[str, Any]) -> None:
    """Insert one audit row (AuditRecord's columns) and return once it is committed; raises what the commit raised."""
    loop = asyncio.get_running_loop()
    groups = _groups.setdefault(sessions, {})
    group = groups.get(loop)
    if group is None:
        group = groups[loop] = _GroupCommit(sessions)
    done: asyncio.Future[None] = loop.create_future()
    group.pending.append((dict(row), done))
    if group.task is None:
        group.task = loop.create_task(group.run())
    # A read cancelled meanwhile leaves its row to be committed (an audit of a read that did not complete).
    await asyncio.shield(done)
