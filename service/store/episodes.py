"""The episode repository: Episode aggregates (service.domain.episode) loaded from and saved to their tables.

An episode is stored as its `episode` row, its `assignment` rows (the one history of its peers) and, once ended,
its `episode_closure` row. `episode.peer_id` and `episode.assigned_at` are a projection of the open assignment,
written here on every save and never by a use case: they exist for indexed queries (caseloads, a peer's
clients). The unit of work (service/store/uow.py) saves every aggregate it handed out and collects their events.
"""

from __future__ import annotations

from sqlalchemy import insert, inspect, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import make_transient_to_detached

from service.domain.episode import Assignment, Closure, DomainEvent, Episode
from service.store.matching import Assignment as AssignmentRow
from service.store.matching import EpisodeClosure, not_cancelled
from service.store.models import Client, table_of
from service.store.models import Episode as EpisodeRow


class EpisodeRepository:
    """Episodes of one transaction. Each is loaded once: asking again answers the same object."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session
        self._seen: dict[str, tuple[EpisodeRow, Episode]] = {}

    async def get(self, episode_id: str, *, site: str | None = None, for_update: bool = False) -> Episode | None:
        """The episode; with `site`, only if its client belongs to that site (None otherwise, as for none)."""
        if episode_id in self._seen:
            known, seen = self._seen[episode_id]
            return seen if site is None or await self._site_of(known) == site else None
        query = select(EpisodeRow).where(EpisodeRow.id == episode_id)
        if site is not None:
            query = query.join(Client, Client.id == EpisodeRow.client_id).where(Client.site == site)
        if for_update:
            query = query.with_for_update(of=EpisodeRow)
        row = (await self._session.execute(query)).scalar_one_or_none()
        return None if row is None else await self._load(row)

    async def for_stay(self, client_id: str, ehr_encounter_id: str) -> Episode | None:
        """The episode of this stay, locked for the rest of the transaction (PostgreSQL; SQLite serialises
        writers)."""
        query = (
            select(EpisodeRow)
            .where(EpisodeRow.client_id == client_id, EpisodeRow.ehr_encounter_id == ehr_encounter_id)
            .with_for_update()
        )
        row = (await self._session.execute(query)).scalar_one_or_none()
        return None if row is None else await self._load(row)

    async def current_of(self, client_id: str) -> Episode | None:
        """The client's newest episode (the one the program works in); a stay whose admission the hospital
        cancelled never was one."""
        query = (
            select(EpisodeRow)
            .where(EpisodeRow.client_id == client_id, not_cancelled(EpisodeRow.id))
            .order_by(EpisodeRow.created_at.desc(), EpisodeRow.id.desc())
            .limit(1)
        )
        row = (await self._session.execute(query)).scalar_one_or_none()
        return None if row is None else await self._load(row)

    async def of_peer(self, peer_id: str, client_id: str) -> Episode | None:
        """The client's current episode if — and only if — this peer is assigned to it."""
        episode = await self.current_of(client_id)
        return episode if episode is not None and episode.peer_id == peer_id else None

    def add(self, episode: Episode) -> None:
        """A new episode: its row is complete at once, so a query that flushes the session can store it."""
        row = EpisodeRow(id=episode.id, client_id=episode.client_id, ehr_encounter_id=episode.ehr_encounter_id)
        _write(row, episode)
        self._session.add(row)
        self._seen[episode.id] = (row, episode)

    # --- the unit of work's side ------------------------------------------------------------------------------

    async def save(self) -> None:
        """Write every aggregate handed out back to its rows (new assignment rows, the closure, the projection)."""
        for row, episode in self._seen.values():
            _write(row, episode)
            if row in self._session.new:  # not flushed by a query since it was added: one plain INSERT
                await self._insert(row)
        await self._flush()  # episode rows first: assignments and closures refer to them
        added: list[tuple[AssignmentRow, Assignment]] = []
        for _, episode in self._seen.values():
            for assignment in episode.assignments:
                if assignment.key is None:
                    stored = AssignmentRow(episode_id=episode.id)
                    _write_assignment(stored, assignment)
                    self._session.add(stored)
                    added.append((stored, assignment))
                else:
                    existing = await self._session.get(AssignmentRow, assignment.key)
                    assert existing is not None  # loaded with the aggregate, in this transaction
                    _write_assignment(existing, assignment)
            closure = episode.closure
            if closure is not None and await self._session.get(EpisodeClosure, episode.id) is None:
                self._session.add(
                    EpisodeClosure(
                        episode_id=episode.id, ended_at=closure.ended_at, reason=closure.reason, note=closure.note
                    )
                )
        await self._flush()
        for stored, assignment in added:
            assignment.key = stored.id

    async def _flush(self) -> None:
        session = self._session
        if session.new or session.deleted or session.dirty:  # an empty flush still costs a greenlet round
            await session.flush()

    async def _insert(self, row: EpisodeRow) -> None:
        """Insert a new episode's complete row as a Core statement (the ORM's flush of one row costs several
        times the INSERT), then keep it in the session as a stored row whose later changes the flush writes."""
        self._session.expunge(row)
        values = {attr.columns[0].key: getattr(row, attr.key) for attr in _EPISODE_COLUMNS}
        await self._session.execute(_INSERT_EPISODE, values)
        make_transient_to_detached(row)
        self._session.add(row)

    def take_events(self) -> list[DomainEvent]:
        return [event for _, episode in self._seen.values() for event in episode.take_events()]

    # --- mapping ------------------------------------------------------------------------------------------------

    async def _load(self, row: EpisodeRow) -> Episode:
        if row.id in self._seen:
            return self._seen[row.id][1]
        stored = await self._session.execute(
            select(AssignmentRow)
            .where(AssignmentRow.episode_id == row.id)
            .order_by(AssignmentRow.started_at, AssignmentRow.id)
        )
        closure = await self._session.get(EpisodeClosure, row.id)
        episode = Episode(
            id=row.id,
            client_id=row.client_id,
            ehr_encounter_id=row.ehr_encounter_id,
            state=row.state,
            created_at=row.created_at,
            updated_at=row.updated_at,
            encounter_json=row.encounter_json,
            admitted_at=row.admitted_at,
            discharged_at=row.discharged_at,
            discharge_disposition=row.discharge_disposition,
            readmission=bool(row.readmission),
            previous_episode_id=row.previous_episode_id,
            expected_discharge_at=row.expected_discharge_at,
            snapshot_at=row.snapshot_at,
            assignments=[_assignment(a) for a in stored.scalars().all()],
            closure=None if closure is None else Closure(closure.ended_at, closure.reason, closure.note),
        )
        self._seen[row.id] = (row, episode)
        return episode

    async def _site_of(self, row: EpisodeRow) -> str | None:
        client = await self._session.get(Client, row.client_id)
        return client.site if client is not None else None


_EPISODE_COLUMNS = tuple(inspect(EpisodeRow).column_attrs)
_EPISODE_TABLE = table_of(EpisodeRow)
_INSERT_EPISODE = insert(_EPISODE_TABLE)  # built once: a statement made anew per episode is cache-keyed anew


def _assignment(row: AssignmentRow) -> Assignment:
    return Assignment(
        peer_id=row.peer_id,
        started_at=row.started_at,
        suggested=row.suggested,
        score=row.score,
        ended_at=row.ended_at,
        end_kind=row.end_kind,
        end_reason=row.end_reason,
        requested_by=row.requested_by,
        note=row.note,
        key=row.id,
    )


def _write_assignment(row: AssignmentRow, assignment: Assignment) -> None:
    row.peer_id = assignment.peer_id
    row.started_at = assignment.started_at
    row.suggested = assignment.suggested
    row.score = assignment.score
    row.ended_at = assignment.ended_at
    row.end_kind = assignment.end_kind
    row.end_reason = assignment.end_reason
    row.requested_by = assignment.requested_by
    row.note = assignment.note


def _write(row: EpisodeRow, episode: Episode) -> None:
    """The aggregate's state onto its row. Only what differs is set: setting an attribute, even to the value it
    has, marks the row dirty, and the next flush of a dirty row costs the ORM's whole flush machinery to find
    there is nothing to write (the unit of work saves every aggregate again after its events are handled)."""
    stored = row.__dict__  # the loaded values, read without triggering a load
    for name, value in (
        ("state", episode.state),
        ("created_at", episode.created_at),
        ("updated_at", episode.updated_at),
        ("encounter_json", episode.encounter_json),
        ("admitted_at", episode.admitted_at),
        ("discharged_at", episode.discharged_at),
        ("discharge_disposition", episode.discharge_disposition),
        ("readmission", episode.readmission),
        ("previous_episode_id", episode.previous_episode_id),
        ("expected_discharge_at", episode.expected_discharge_at),
        ("snapshot_at", episode.snapshot_at),
        ("peer_id", episode.peer_id),  # the projection of the open assignment
        ("assigned_at", episode.assigned_at),
    ):
        if name not in stored or stored[name] != value or type(stored[name]) is not type(value):
            setattr(row, name, value)
