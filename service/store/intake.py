"""The rows a hospital event reads and writes first, in as few statements as a busy intake can afford.

A notification's transaction used to ask, one statement each and the site in a transaction of its own, whether
the sending site is active, whether the message was answered before and whether its Patient is a known client.
`look_up` asks all three in one statement inside the event's own transaction, so a site disabled a moment ago
is refused at once (nothing is cached) and the checkout, BEGIN and ROLLBACK of a second transaction are gone.
New rows whose values are complete at once (a new client, its identifier digests, the message's answer) are
inserted as Core statements (Core statements also never autoflush the session): the ORM's flush machinery cost
more than the INSERT itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, bindparam, insert, literal, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import make_transient_to_detached

from service.store.linking import ClientIdentifier
from service.store.models import Client, ProcessedMessage, table_of
from service.store.sites import Site

_MADE_HERE = "peerway.clients_made"  # session.info key: the clients insert_client made in this session
CLIENT_FIELDS = ("id", "site", "ehr_patient_id", "patient_json", "created_at", "updated_at")
CLIENT_COLUMNS = tuple(Client.__table__.c[name] for name in CLIENT_FIELDS)


@dataclass(frozen=True)
class Answered:
    status: int
    body: str


@dataclass(frozen=True)
class IntakeLookup:
    site_active: bool
    answered: Answered | None  # the answer a replayed message gets
    client: Client | None  # the known client of the event's Patient (when one was asked for)


def _look_up_query(with_patient: bool) -> Select[Any]:
    # Core columns, not ORM entities: the row is turned into a session object only when there is a client.
    sites, answers, clients = Site.__table__.c, ProcessedMessage.__table__.c, Client.__table__.c
    patient_match = clients.ehr_patient_id == bindparam("ehr_patient_id") if with_patient else literal(False)
    return (
        select(sites.status, answers.response_status, answers.response_body, *CLIENT_COLUMNS)
        .select_from(
            Site.__table__.outerjoin(
                ProcessedMessage.__table__, and_(answers.site == sites.id, answers.bundle_id == bindparam("bundle_id"))
            ).outerjoin(Client.__table__, and_(clients.site == sites.id, patient_match))
        )
        .where(sites.id == bindparam("site"))
    )


# Statements built once with bound parameters: SQLAlchemy keys its cache of compiled statements on the
# statement, and a statement built anew for each message (values written into it) is keyed anew each time,
# which cost more than running it.
_LOOK_UP = {True: _look_up_query(True), False: _look_up_query(False)}
_INSERT_CLIENT = insert(table_of(Client))
_INSERT_IDENTIFIERS = insert(table_of(ClientIdentifier))
_INSERT_ANSWER = insert(table_of(ProcessedMessage))


async def look_up(session: AsyncSession, site: str, bundle_id: str, ehr_patient_id: str | None) -> IntakeLookup:
    """The site's state, the message's earlier answer and the Patient's client, in one statement."""
    parameters = {"site": site, "bundle_id": bundle_id}
    if ehr_patient_id is not None:
        parameters["ehr_patient_id"] = ehr_patient_id
    row = (await session.execute(_LOOK_UP[ehr_patient_id is not None], parameters)).one_or_none()
    if row is None:
        return IntakeLookup(site_active=False, answered=None, client=None)
    status, answer_status, answer_body, *client_values = row
    answered = Answered(answer_status, answer_body) if answer_status is not None else None
    client = None
    if client_values[0] is not None:
        client = _persistent(session, Client(**dict(zip(CLIENT_FIELDS, client_values, strict=True))))
    return IntakeLookup(site_active=status == "active", answered=answered, client=client)


def _persistent(session: AsyncSession, row: Client) -> Client:
    """A row known to be stored as it is, made a clean persistent object of the session (its later changes are
    written by the flush as usual), without reading it again."""
    existing = session.sync_session.identity_map.get(session.sync_session.identity_key(Client, row.id))
    if isinstance(existing, Client):
        return existing
    make_transient_to_detached(row)
    session.add(row)
    return row


async def insert_client(session: AsyncSession, values: Client, digests: Iterable[tuple[str, str]]) -> Client:
    """Insert a new client and its identifier digests; answer it as a persistent object of the session (so that
    what else the transaction does finds it without reading it back)."""
    await session.execute(_INSERT_CLIENT, {name: getattr(values, name) for name in CLIENT_FIELDS})
    rows = [{"client_id": values.id, "system": s, "value_sha256": d} for s, d in sorted(set(digests))]
    if rows:
        await session.execute(_INSERT_IDENTIFIERS, rows)
    session.info.setdefault(_MADE_HERE, set()).add(values.id)
    return _persistent(session, values)


def made_in_this_transaction(session: AsyncSession, client_id: str) -> bool:
    """Whether insert_client made this client in the session's (uncommitted) transaction: then nothing else, a
    consent or an episode of another transaction, can refer to it yet."""
    return client_id in session.info.get(_MADE_HERE, ())


async def record_answer(
    session: AsyncSession, site: str, bundle_id: str, event: str, status: int, body: str, now: datetime
) -> None:
    """The message's answer, which a replay gets; a concurrent copy of the message fails here on the key."""
    with session.no_autoflush:  # the episodes are written once, when the unit of work saves them
        await session.execute(
            _INSERT_ANSWER,
            {
                "site": site,
                "bundle_id": bundle_id,
                "event": event,
                "response_status": status,
                "response_body": body,
                "received_at": now,
            },
        )
