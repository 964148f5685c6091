"""A generated year of program activity at two sites, written straight through the store (not over HTTP) so a
test can run the safety net over it with a controlled clock and recompute the outcomes from the rows.

Most clients are "regular": assigned within two days of discharge, contacted within five, at least an hour
every week until the episode completes. A known number of clients are planted to trip each rule (see Plan), so
the test knows which alerts must appear, and that each must appear once.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from service.store.alerts import SupervisionCheckIn
from service.store.matching import Assignment, EpisodeClosure
from service.store.models import Client, Contact, Episode, PeerSupporter
from service.store.sites import PeerSite, Site

YEAR_START = datetime(2025, 1, 6, tzinfo=UTC)  # a Monday
SITES = ("north", "south")
PEERS_PER_SITE = 10
CLIENTS = 320
DAY = timedelta(days=1)


@dataclass
class Plan:
    """What was planted: episode ids by what should happen to them, and the peer whose supervision lapses."""

    never_contacted: list[str] = field(default_factory=list)  # no contact ever; ended "no-contact" at day 35
    never_assigned: list[str] = field(default_factory=list)  # nobody until day 12, first contact day 16
    two_low_weeks: list[str] = field(default_factory=list)  # weeks 3 and 4 at 30 minutes
    one_low_week: list[str] = field(default_factory=list)  # week 3 at 30 minutes (no alert)
    withdrew: list[str] = field(default_factory=list)  # ended "client-withdrew" at day 30
    readmitted: list[tuple[str, str]] = field(default_factory=list)  # (first stay, the readmission)
    rematched: list[str] = field(default_factory=list)  # peer changed at day 15
    lapsed_peer: str = ""  # supervision check-ins stop after day 180
    peers: dict[str, list[str]] = field(default_factory=dict)  # site -> peer ids


class _Writer:
    def __init__(self, session: AsyncSession, rng: random.Random) -> None:
        self.session = session
        self.rng = rng
        self.n = 0

    def next_id(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}-{self.n:05d}"

    def episode(self, client_id: str, admitted: datetime, discharged: datetime, previous: str | None) -> str:
        episode_id = self.next_id("ep")
        self.session.add(
            Episode(
                id=episode_id,
                client_id=client_id,
                ehr_encounter_id=self.next_id("enc"),
                state="in-community",
                admitted_at=admitted,
                discharged_at=discharged,
                discharge_disposition="home",
                encounter_json="{}",
                peer_id=None,
                assigned_at=None,
                created_at=admitted,
                updated_at=discharged,
                readmission=previous is not None,
                previous_episode_id=previous,
            )
        )
        return episode_id

    def assign(self, episode_id: str, peer_id: str, start: datetime, end: datetime | None, kind: str | None) -> None:
        self.session.add(
            Assignment(
                episode_id=episode_id,
                peer_id=peer_id,
                started_at=start,
                suggested=False,
                score=None,
                ended_at=end,
                end_kind=kind,
                end_reason="peer-unavailable" if kind == "rematch" else None,
                requested_by="coordinator" if kind == "rematch" else None,
            )
        )

    def contact(self, episode_id: str, peer_id: str, at: datetime, minutes: int, status: str = "finished") -> None:
        self.session.add(
            Contact(
                id=self.next_id("c"),
                episode_id=episode_id,
                peer_id=peer_id,
                kind="community-visit",
                started_at=at,
                minutes=minutes,
                created_at=at,
                updated_at=at,
                status=status,
                version_id=1,
            )
        )

    def close(self, episode_id: str, at: datetime, reason: str) -> None:
        self.session.add(EpisodeClosure(episode_id=episode_id, ended_at=at, reason=reason))

    def weekly(self, episode_id: str, peer_id: str, discharged: datetime, weeks: range, low: set[int]) -> None:
        """A contact in each week (one or two, an hour or more in all; 30 minutes in the `low` weeks)."""
        for k in weeks:
            start = discharged + k * 7 * DAY
            first = start + timedelta(hours=self.rng.randint(12, 100))
            if k in low:
                self.contact(episode_id, peer_id, first, 30)
            elif self.rng.random() < 0.3:
                self.contact(episode_id, peer_id, first, 40)
                self.contact(episode_id, peer_id, first + timedelta(hours=30), self.rng.randint(20, 50))
            else:
                self.contact(episode_id, peer_id, first, self.rng.randint(60, 120))


async def seed_year(session: AsyncSession, seed: int = 17, clients: int = CLIENTS) -> Plan:
    """Write the year (the caller commits). Deterministic for a seed; `clients` counts first stays (the planted
    cases are the same number whatever it is, the rest regular)."""
    rng = random.Random(seed)
    w = _Writer(session, rng)
    plan = Plan()
    before = YEAR_START - 14 * DAY  # peers start two weeks before the year; first check-in on day 7
    for site in SITES:
        session.add(
            Site(
                id=site,
                name=f"{site.title()} General",
                status="active",
                fhir_version="4.0.1",
                write_mode="put",
                created_at=before,
                updated_at=before,
            )
        )
        plan.peers[site] = []
        for _ in range(PEERS_PER_SITE):
            peer_id = w.next_id(f"peer-{site}")
            session.add(
                PeerSupporter(id=peer_id, name=peer_id, status="active", created_at=before, organization_id="default")
            )
            plan.peers[site].append(peer_id)
    await session.flush()
    for site in SITES:
        for peer_id in plan.peers[site]:
            session.add(PeerSite(peer_id=peer_id, site_id=site, enabled_at=before))
    plan.lapsed_peer = plan.peers["south"][3]
    for peer_ids in plan.peers.values():
        for peer_id in peer_ids:
            day = 7
            while day <= 420 and not (peer_id == plan.lapsed_peer and day > 180):
                held = (YEAR_START + day * DAY).date()
                session.add(_check_in(w.next_id("ci"), peer_id, held))
                day += 21

    kinds = (
        ["never_contacted"] * 12
        + ["never_assigned"] * 8
        + ["two_low_weeks"] * 10
        + ["one_low_week"] * 8
        + ["withdrew"] * 8
        + ["readmitted"] * 30
        + ["rematched"] * 6
    )
    kinds += ["regular"] * (clients - len(kinds))
    rng.shuffle(kinds)
    for n, kind in enumerate(kinds):
        site = SITES[n % 2]
        client_id = w.next_id("client")
        discharged = YEAR_START + timedelta(days=rng.uniform(0, 330))
        admitted = discharged - timedelta(days=rng.randint(3, 20))
        session.add(
            Client(
                id=client_id,
                site=site,
                ehr_patient_id=f"p{n}",
                patient_json="{}",
                created_at=admitted,
                updated_at=admitted,
            )
        )
        peer = rng.choice(plan.peers[site])
        episode_id = w.episode(client_id, admitted, discharged, None)
        await session.flush()
        length = rng.randint(6, 16)
        if kind == "never_contacted":
            w.assign(episode_id, peer, discharged + DAY, None, None)
            w.close(episode_id, discharged + 35 * DAY, "no-contact")
            plan.never_contacted.append(episode_id)
        elif kind == "never_assigned":
            w.assign(episode_id, peer, discharged + 12 * DAY, None, None)
            w.contact(episode_id, peer, discharged + 16 * DAY, 90)
            w.weekly(episode_id, peer, discharged, range(3, length), set())
            w.close(episode_id, discharged + length * 7 * DAY, "completed")
            plan.never_assigned.append(episode_id)
        elif kind == "readmitted":
            back = rng.randint(3, 8)
            readmitted_at = discharged + (back * 7 + 2) * DAY
            w.assign(episode_id, peer, discharged + DAY, readmitted_at, "new-stay")
            w.weekly(episode_id, peer, discharged, range(back), set())
            again = readmitted_at + timedelta(days=rng.randint(5, 12))
            second = w.episode(client_id, readmitted_at, again, episode_id)
            await session.flush()
            w.assign(second, peer, readmitted_at, None, None)
            w.weekly(second, peer, again, range(length), set())
            w.close(second, again + length * 7 * DAY, "completed")
            plan.readmitted.append((episode_id, second))
        else:
            w.assign(episode_id, peer, discharged + timedelta(hours=rng.randint(2, 47)), None, None)
            low = {3, 4} if kind == "two_low_weeks" else {3} if kind == "one_low_week" else set()
            if kind == "withdrew":
                w.weekly(episode_id, peer, discharged, range(4), set())
                w.close(episode_id, discharged + 30 * DAY, "client-withdrew")
                plan.withdrew.append(episode_id)
            else:
                w.weekly(episode_id, peer, discharged, range(length), low)
                w.close(episode_id, discharged + length * 7 * DAY, "completed")
            if kind == "two_low_weeks":
                plan.two_low_weeks.append(episode_id)
            elif kind == "one_low_week":
                plan.one_low_week.append(episode_id)
        if kind == "rematched":
            # The first peer's assignment ends at day 15 with a re-match; another of the site's peers takes over.
            await session.flush()
            first = (await session.execute(select(Assignment).where(Assignment.episode_id == episode_id))).scalar_one()
            first.ended_at, first.end_kind = discharged + 15 * DAY, "rematch"
            first.end_reason, first.requested_by = "peer-unavailable", "coordinator"
            other = next(p for p in plan.peers[site] if p != peer)
            w.assign(episode_id, other, discharged + 15 * DAY, None, None)
            plan.rematched.append(episode_id)
        # Now and then a contact recorded and then cancelled: it must count for nothing.
        if kind == "never_contacted" or rng.random() < 0.05:
            w.contact(episode_id, peer, discharged + 2 * DAY, 45, status="entered-in-error")
    await session.flush()
    return plan


def _check_in(check_in_id: str, peer_id: str, held: date) -> SupervisionCheckIn:
    return SupervisionCheckIn(
        id=check_in_id,
        peer_id=peer_id,
        organization="default",
        held_on=held,
        outcome="well",
        recorded_by="organization-coordinator/seed",
        recorded_at=datetime(held.year, held.month, held.day, 12, tzinfo=UTC),
    )
