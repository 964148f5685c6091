"""The episode: one hospital stay of one client, and the program's work around it. The heart of Peerway.

An Episode is an aggregate: its state, the hospital stay as the EHR last described it, the history of its
peers (assignments, the one record of who the client's peer is and was), and its closure. Every change goes
through a method here that keeps the rules and records what happened as domain events (the unit of work turns
them into outbox rows and notifications in the same transaction). Pure: no I/O, no ORM.

The rules of hospital events (each is a row of tests/unit/domain/test_episode.py):
- An episode is one hospital stay (the EHR's Encounter id) of one client (the EHR's Patient id at a site).
- Admit or transfer of an unknown stay opens an episode on the ward; a discharge moves it into the community
  with the discharge date (Encounter.period.end, else the event's time) and disposition. A discharge of a stay
  never seen opens the episode directly in the community.
- State only moves forward: an admit or transfer after the discharge of the same stay is recorded but does not
  pull the client back onto the ward (nor overwrite the newer snapshot).
- Snapshots only move forward in time: an Encounter older (meta.lastUpdated, else the event's time) than the
  one kept does not replace it; a discharge still moves an on-ward stay into the community.
- A stay that began before the client's current stay never becomes current (a late event of an old stay).
- A new stay of a client whose previous episode had a peer keeps that peer: the program's presence goes on.
- Readmission: a new stay of a client whose current episode is in the community, or an Encounter carrying
  hospitalization.reAdmission, marks the episode readmitted (event Readmitted).
- Expected discharge of an on-ward stay: the date the EHR named (extension or R5 plannedEndDate), else an
  in-progress Encounter's period.end when it lies after the event's time.
- Cancellations (HL7 v2, docs/hospital-events.md): a cancelled discharge moves a discharged stay back to the
  ward (the one exception to "state only moves forward"; peer and contacts stay); a cancelled transfer takes the
  message's snapshot for an on-ward stay; a cancelled admit of an on-ward stay closes the episode
  (admission-cancelled), ending its peer's period and handing a peer carried over from the previous episode back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from service.domain.stay import EncounterSnapshot, HospitalEventKind, Stay
from service.domain.vocabulary import (
    ADMISSION_CANCELLED,
    EPISODE_ENDED,
    IN_COMMUNITY,
    NEW_STAY,
    ON_WARD,
    REMATCHED,
    REPLACED,
)

ON_LEAVE_OR_IN_PROGRESS = frozenset({"in-progress", "onleave"})
DISPOSITION_LENGTH = 64  # the stored disposition is a code or a short text


# --- what happened (domain events) -------------------------------------------------------------------------


@dataclass(frozen=True)
class CareTeamChanged:
    """The episode's peers changed: the client's CareTeam at the EHR must be brought up to date."""

    episode_id: str


@dataclass(frozen=True)
class Readmitted:
    """A client of the program is back in hospital: the coordinators (and, as consent allows, the peer) are told."""

    episode_id: str
    client_id: str
    peer_id: str | None


@dataclass(frozen=True)
class Discharged:
    """A stay moved into the community: the client's background is read from the EHR (service/app/background.py)."""

    episode_id: str
    client_id: str


DomainEvent = CareTeamChanged | Readmitted | Discharged


# --- the parts of an episode ---------------------------------------------------------------------------------


@dataclass
class Assignment:
    """One period of a peer with the episode: how it began (suggested or by hand) and how it ended."""

    peer_id: str
    started_at: datetime
    suggested: bool = False
    score: float | None = None
    ended_at: datetime | None = None
    end_kind: str | None = None  # assignment-end: replaced | rematch | episode-ended | new-stay
    end_reason: str | None = None
    requested_by: str | None = None  # client | peer | coordinator
    note: str | None = None
    key: int | None = None  # the store's row id; None until stored


@dataclass(frozen=True)
class Closure:
    """The program's work with the client ended (episode-end-reason)."""

    ended_at: datetime
    reason: str
    note: str | None = None


class EpisodeClosed(Exception):
    """A change that needs an open episode was asked of a closed one."""


# --- the aggregate -------------------------------------------------------------------------------------------


def _older(candidate: datetime | None, kept: datetime | None) -> bool:
    return candidate is not None and kept is not None and candidate < kept


@dataclass
class Episode:
    id: str
    client_id: str
    ehr_encounter_id: str
    state: str
    created_at: datetime
    updated_at: datetime
    encounter_json: str = "{}"
    admitted_at: datetime | None = None
    discharged_at: datetime | None = None
    discharge_disposition: str | None = None
    readmission: bool = False
    previous_episode_id: str | None = None
    expected_discharge_at: datetime | None = None
    snapshot_at: datetime | None = None
    assignments: list[Assignment] = field(default_factory=list)
    closure: Closure | None = None
    events: list[DomainEvent] = field(default_factory=list, repr=False, compare=False)

    # --- reading -------------------------------------------------------------------------------------------

    @property
    def current_assignment(self) -> Assignment | None:
        open_ones = [a for a in self.assignments if a.ended_at is None]
        return open_ones[-1] if open_ones else None

    @property
    def peer_id(self) -> str | None:
        """The client's peer now (None: nobody assigned)."""
        current = self.current_assignment
        return current.peer_id if current is not None else None

    @property
    def assigned_at(self) -> datetime | None:
        current = self.current_assignment
        return current.started_at if current is not None else None

    @property
    def on_ward(self) -> bool:
        return self.state == ON_WARD

    @property
    def closed(self) -> bool:
        return self.closure is not None

    def rematched_peers(self) -> frozenset[str]:
        """Peers re-matched away from this episode (at either side's request): never suggested again."""
        return frozenset(a.peer_id for a in self.assignments if a.end_kind == REMATCHED)

    # --- hospital events -----------------------------------------------------------------------------------

    @classmethod
    def open_for_stay(
        cls,
        episode_id: str,
        client_id: str,
        stay: Stay,
        previous: Episode | None,
        event_time: datetime | None,
        now: datetime,
    ) -> Episode | None:
        """A new episode for a stay not seen before (on the ward until `apply_stay` says otherwise); None when
        the stay began before the client's current one. Carries the previous episode's peer over."""
        encounter = stay.encounter
        if previous is not None and _older(encounter.start, previous.admitted_at):
            return None
        readmission = encounter.readmission or (previous is not None and previous.state == IN_COMMUNITY)
        episode = cls(
            id=episode_id,
            client_id=client_id,
            ehr_encounter_id=encounter.ehr_id,
            state=ON_WARD,
            created_at=now,
            updated_at=now,
            encounter_json=encounter.resource_json,
            admitted_at=encounter.start,
            readmission=readmission,
            previous_episode_id=previous.id if previous is not None else None,
            snapshot_at=encounter.updated_at or event_time,
        )
        if previous is not None:
            episode._carry_peer_over(previous, now)
        if readmission:
            episode.events.append(Readmitted(episode.id, client_id, episode.peer_id))
        return episode

    def apply_stay(self, stay: Stay, event_time: datetime | None, now: datetime, *, opened: bool) -> str:
        """What one event says about this stay. Answers what it did, in words for the sender (ids only, no PHI)."""
        encounter = stay.encounter
        snapshot_at = encounter.updated_at or event_time
        if stay.kind is HospitalEventKind.DISCHARGE:
            if not opened and self.state == IN_COMMUNITY and _older(snapshot_at, self.snapshot_at):
                return "an older snapshot of a discharged stay; recorded without effect"
            if opened or self.state != IN_COMMUNITY:
                self.events.append(Discharged(self.id, self.client_id))
            self.state = IN_COMMUNITY
            self.discharged_at = encounter.end or event_time or now
            disposition = encounter.discharge_disposition
            self.discharge_disposition = disposition[:DISPOSITION_LENGTH] if disposition else None
            self.encounter_json = encounter.resource_json
            self.admitted_at = self.admitted_at or encounter.start
            self.expected_discharge_at = None
            self.snapshot_at = max(filter(None, (snapshot_at, self.snapshot_at)), default=None)
            self.updated_at = now
            return "episode opened in the community" if opened else "episode moved to the community"
        if self.state == IN_COMMUNITY:
            return "stay already discharged; late event recorded without effect"
        if not opened and _older(snapshot_at, self.snapshot_at):
            return "an older snapshot of the stay; recorded without effect"
        self.encounter_json = encounter.resource_json
        self.admitted_at = self.admitted_at or encounter.start
        self.expected_discharge_at = _expected_discharge(encounter, event_time, now)
        self.snapshot_at = snapshot_at or self.snapshot_at
        self.updated_at = now
        if encounter.readmission and not self.readmission:
            self.readmission = True
            self.events.append(Readmitted(self.id, self.client_id, self.peer_id))
            return "episode marked readmitted"
        if opened:
            return "episode opened on the ward (readmission)" if self.readmission else "episode opened on the ward"
        return "episode updated"

    def cancel_discharge(self, stay: Stay, now: datetime) -> str:
        """The discharge did not happen: back on the ward as the message describes the stay."""
        if self.closed or self.state != IN_COMMUNITY:
            return "stay not discharged; cancellation recorded without effect"
        self.state = ON_WARD
        self.discharged_at = None
        self.discharge_disposition = None
        self.encounter_json = stay.encounter.resource_json
        self.expected_discharge_at = stay.encounter.expected_end
        self.updated_at = now
        return "discharge cancelled; episode back on the ward"

    def cancel_transfer(self, stay: Stay, now: datetime) -> str:
        """The transfer did not happen: the stay is where the message says it is again."""
        if self.closed or self.state != ON_WARD:
            return "stay not on the ward; cancellation recorded without effect"
        self.encounter_json = stay.encounter.resource_json
        self.updated_at = now
        return "transfer cancelled; episode updated"

    def withdraw(self, stay: Stay, previous: Episode | None, now: datetime) -> str:
        """The admission did not happen: the episode closes (admission-cancelled). A peer carried over from the
        previous episode goes back to it; a peer assigned during this stay is freed."""
        if self.closed or self.state != ON_WARD:
            return "stay not on the ward; cancellation recorded without effect"
        current = self.current_assignment
        carried = current is not None and current is self.assignments[0] and current.started_at == self.created_at
        self.encounter_json = stay.encounter.resource_json
        peer_id = self.end_assignment(now, kind=EPISODE_ENDED, reason=ADMISSION_CANCELLED)
        self.closure = Closure(now, ADMISSION_CANCELLED)
        self.updated_at = now
        if peer_id is not None and carried and previous is not None and not previous.closed:
            if previous.peer_id is None:
                previous._begin(peer_id, now, suggested=False, score=None)
            return "admission cancelled; episode closed, peer back with the previous episode"
        return "admission cancelled; episode closed"

    def _carry_peer_over(self, previous: Episode, now: datetime) -> None:
        peer_id = previous.end_assignment(now, kind=NEW_STAY)
        if peer_id is not None:
            self._begin(peer_id, now, suggested=False, score=None)

    # --- the program's work ----------------------------------------------------------------------------------

    def assign(self, peer_id: str, now: datetime, *, suggested: bool = False, score: float | None = None) -> bool:
        """Make `peer_id` the client's peer (ending any other's period); False when they already are."""
        if self.closed:
            raise EpisodeClosed(self.id)
        if self.peer_id == peer_id:
            return False
        self.end_assignment(now, kind=REPLACED)
        self._begin(peer_id, now, suggested=suggested, score=score)
        return True

    def _begin(self, peer_id: str, now: datetime, *, suggested: bool, score: float | None) -> None:
        self.assignments.append(Assignment(peer_id=peer_id, started_at=now, suggested=suggested, score=score))
        self.updated_at = now
        self.events.append(CareTeamChanged(self.id))

    def end_assignment(
        self,
        now: datetime,
        *,
        kind: str,
        reason: str | None = None,
        requested_by: str | None = None,
        note: str | None = None,
    ) -> str | None:
        """End the current peer's period (their place is free); answers their id, or None when there was none."""
        current = self.current_assignment
        if current is None:
            return None
        current.ended_at = now
        current.end_kind = kind
        current.end_reason = reason
        current.requested_by = requested_by
        current.note = note
        self.updated_at = now
        self.events.append(CareTeamChanged(self.id))
        return current.peer_id

    def rematch(self, now: datetime, *, requested_by: str, reason: str, note: str | None = None) -> str | None:
        """Either side asks for a new peer: the pair ends and that peer is not suggested to this client again."""
        return self.end_assignment(now, kind=REMATCHED, reason=reason, requested_by=requested_by, note=note)

    def end(self, now: datetime, reason: str, note: str | None = None) -> None:
        """The program's work with the client ends; the peer's place is freed; the ending is kept."""
        if self.closed:
            raise EpisodeClosed(self.id)
        self.end_assignment(now, kind=EPISODE_ENDED, reason=reason)
        self.closure = Closure(now, reason, note)

    def take_events(self) -> list[DomainEvent]:
        taken, self.events = self.events, []
        return taken


def _expected_discharge(encounter: EncounterSnapshot, event_time: datetime | None, now: datetime) -> datetime | None:
    if encounter.expected_end is not None:
        return encounter.expected_end
    if (
        encounter.status in ON_LEAVE_OR_IN_PROGRESS
        and encounter.end is not None
        and encounter.end > (event_time or now)
    ):
        return encounter.end
    return None
