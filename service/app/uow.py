"""The unit of work every use case that changes an episode runs in, and what each domain event leads to.

A CareTeam change queues the CareTeam for the client's EHR (an outbox row: the worker builds the resource from
the assignment history when it delivers); a readmission tells the site's coordinators, and the assigned peer as
the client's consent allows. Both are written in the transaction of the change.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from service.app import notifications
from service.app.background import collectable, queue_fetch
from service.app.clock import utcnow
from service.app.delivery import OUTBOX_CARETEAM
from service.domain.episode import CareTeamChanged, Discharged, Readmitted
from service.store.db import SessionFactory
from service.store.intake import made_in_this_transaction
from service.store.jobs import new_job
from service.store.models import Client, Episode
from service.store.uow import Handler, UnitOfWork

__all__ = ["SessionFactory", "UnitOfWork", "unit_of_work"]


async def _queue_careteam(session: AsyncSession, event: CareTeamChanged) -> None:
    episode = await session.get(Episode, event.episode_id)
    client = await session.get(Client, episode.client_id) if episode is not None else None
    assert client is not None  # the episode was saved in this transaction
    session.add(new_job(OUTBOX_CARETEAM, event.episode_id, client.site, utcnow()))


async def _tell_readmission(session: AsyncSession, event: Readmitted) -> None:
    episode = await session.get(Episode, event.episode_id)
    assert episode is not None  # the episode was saved in this transaction
    await notifications.record_readmission(session, episode, utcnow())


async def _read_background(session: AsyncSession, event: Discharged) -> None:
    client = await session.get(Client, event.client_id)
    assert client is not None  # the episode was saved in this transaction
    if made_in_this_transaction(session, client.id):
        return  # no consent can name a client made just now; recording one queues the read (consent_changed)
    now = utcnow()
    if await collectable(session, client.id, now):  # else the consent that makes something releasable queues it
        queue_fetch(session, client, now)


HANDLERS: dict[type, Handler] = {
    CareTeamChanged: _queue_careteam,
    Readmitted: _tell_readmission,
    Discharged: _read_background,
}


def unit_of_work(sessions: SessionFactory) -> UnitOfWork:
    return UnitOfWork(sessions, HANDLERS)
