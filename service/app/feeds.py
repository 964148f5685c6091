"""HL7 v2 ADT feeds: a message from a registered feed becomes the same hospital event a FHIR notification is.

- Attribution: a message belongs to the feed registered for the listener's port and its sending facility (MSH-4),
  else to the port's own feed; neither, or a disabled site -> AR and nothing stored. Every feed on a port is of
  one site (add_feed), so the port chooses the site and MSH-4 only picks among that site's feeds.
- Exactly once: the same MSH-10 from the same sender (MSH-3^MSH-4) at a site is processed once; the message's
  row is claimed first in the transaction, so concurrent copies wait, and every copy gets the first answer.
- AA once the transaction commits; AE (with the segment and field) for a message understood but refused, kept
  for replays; AR for one that cannot be processed (header, version, type, sender), of which nothing is kept but
  the feed's error. Admits, transfers, discharges and updates go through service/app/intake.py's apply_stay;
  cancellations and merges are in docs/hospital-events.md ("HL7 v2 feeds").
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import update

from service.app.clock import utcnow
from service.app.intake import apply_stay
from service.app.sites import is_active_site
from service.app.uow import UnitOfWork, unit_of_work
from service.domain.adt import AckCode, AdtMessage, AdtRefused, Cancellation, ErrorLocation
from service.errors import Conflict, InvalidResource, NotFound
from service.fhir.v2 import adt_message, parse_v2, processing_id, read_header
from service.store import feeds as store
from service.store import repository
from service.store.db import SessionFactory, is_outage, transaction
from service.store.feeds import ANY_FACILITY, Hl7Feed, Hl7Message
from service.store.sites import Site
from service.store.uow import retrying

log = logging.getLogger("service.hl7v2")


@dataclass(frozen=True)
class FeedAnswer:
    """What the sender is told (MSA-1, MSA-3 and ERR), and whether it is a replay of the first answer."""

    ack: AckCode
    text: str
    error: ErrorLocation | None = None
    replayed: bool = False
    site: str | None = None  # the feed's site (None: no registered feed took the message)


def _location(where: ErrorLocation | None) -> str | None:
    return None if where is None else f"{where.segment}^{where.sequence}^{where.field}^{where.code}"


def _where(text: str | None) -> ErrorLocation | None:
    if not text:
        return None
    segment, sequence, field, code = text.split("^")
    return ErrorLocation(segment, int(field), code, int(sequence))


async def take_message(
    sessions: SessionFactory,
    port: int,
    text: str,
    expected_discharge_extension: str | None,
    processing: str = "P",
) -> FeedAnswer:
    """Take one message that arrived on the listener bound to `port` and answer it (after the commit).
    `processing`: the MSH-11 processing id this deployment takes (PEERWAY_HL7_PROCESSING_ID)."""
    try:
        parsed = parse_v2(text)
        control_id, sender, _, _ = read_header(parsed)
    except AdtRefused as refused:
        return FeedAnswer(refused.ack, refused.text, refused.where)
    async with sessions() as session:
        feed = await store.feed_for(session, port, sender.facility)
        if feed is not None:
            session.expunge(feed)
    if feed is None:
        where = ErrorLocation("MSH", 4, "103")
        return FeedAnswer(AckCode.REJECT, "the sending facility is not registered for this port", where)
    if not await is_active_site(sessions, feed.site):  # a disabled site takes nothing, as its EHR's tokens
        return FeedAnswer(AckCode.REJECT, "the feed's site is disabled", ErrorLocation("MSH", 4, "103"))
    if processing_id(parsed) != processing:
        # A training or debugging message (or a production one at a test install) is no real event: AR 202,
        # nothing kept, and the feed's health shows the refusal.
        text = f"MSH-11 (processing id) must be {processing} here: this deployment takes no other messages"
        where = ErrorLocation("MSH", 11, "202")
        await _count(sessions, feed.id, text, where)
        return FeedAnswer(AckCode.REJECT, text, where, site=feed.site)
    try:
        return await _take(sessions, feed, sender.key, control_id, text, expected_discharge_extension)
    except Exception as error:
        if is_outage(error):
            raise  # no ACK: the engine resends once the database is back
        # A failure of ours that resending will not cure: AE, so the feed is not blocked on this message, and the
        # feed's health shows it. Nothing of the message is kept (its transaction rolled back): a resend is
        # processed anew. Logged by ids only: the error's text may quote the message.
        log.error("HL7 v2 feed %s: message not processed (%s); answered AE 207", feed.id, type(error).__name__)
        answer = internal_error(feed.site)
        assert answer.error is not None
        await _count(sessions, feed.id, answer.text, answer.error, AckCode.ERROR)
        return answer


def internal_error(site: str | None = None) -> FeedAnswer:
    """AE with ERR code 207 (application internal error): a failure of Peerway's other than a database outage."""
    text = "the message could not be processed (application internal error)"
    return FeedAnswer(AckCode.ERROR, text, ErrorLocation("", 0, "207"), site=site)


async def _take(
    sessions: SessionFactory,
    feed: Hl7Feed,
    sender: str,
    control_id: str,
    text: str,
    expected_discharge_extension: str | None,
) -> FeedAnswer:
    try:
        message: AdtMessage | None = adt_message(text, ZoneInfo(feed.timezone), expected_discharge_extension)
        refusal: AdtRefused | None = None
    except AdtRefused as refused:
        message, refusal = None, refused
    if refusal is not None and refusal.ack is AckCode.REJECT:
        await _count(sessions, feed.id, refusal.text, refusal.where)
        return FeedAnswer(refusal.ack, refusal.text, refusal.where, site=feed.site)

    async def once() -> FeedAnswer:
        return await _take_once(sessions, feed, sender, control_id, message, refusal)

    async def answered_already() -> FeedAnswer | None:
        async with sessions() as session:
            done = await store.answered(session, feed.site, sender, control_id)
        return None if done is None else _replay(done, feed.site)

    return await retrying(once, settled=answered_already)


async def _take_once(
    sessions: SessionFactory,
    feed: Hl7Feed,
    sender: str,
    control_id: str,
    message: AdtMessage | None,
    refusal: AdtRefused | None,
) -> FeedAnswer:
    async with unit_of_work(sessions) as uow:
        done = await store.answered(uow.session, feed.site, sender, control_id)
        if done is not None:
            return _replay(done, feed.site)
        now = utcnow()
        # The claim comes first: a concurrent copy waits on this key and then replays what this one answers.
        row = Hl7Message(
            site=feed.site,
            sender=sender,
            control_id=control_id,
            feed_id=feed.id,
            trigger=message.trigger[:8] if message is not None else "",
            ack_code=AckCode.ERROR.value,
            ack_text="",
            received_at=now,
        )
        uow.session.add(row)
        await uow.session.flush()
        if message is None:
            assert refusal is not None
            answer = FeedAnswer(AckCode.ERROR, refusal.text, refusal.where, site=feed.site)
        else:
            text = await _apply(uow, feed.site, message, now)
            answer = FeedAnswer(AckCode.ACCEPT, f"{message.trigger}: {text}", site=feed.site)
            row.merged_patient_id = message.merged_patient_id
            row.surviving_patient_id = message.surviving_patient_id
        row.ack_code, row.ack_text, row.error_location = answer.ack.value, answer.text, _location(answer.error)
        await _count_in(uow, feed.id, now, answer)
    return answer


def _replay(done: Hl7Message, site: str) -> FeedAnswer:
    return FeedAnswer(AckCode(done.ack_code), done.ack_text, _where(done.error_location), replayed=True, site=site)


async def _apply(uow: UnitOfWork, site: str, message: AdtMessage, now: datetime) -> str:
    if message.merged_patient_id is not None:
        return "merge recorded for the coordinator; no episode changed"
    stay = message.stay
    if stay is None:
        return "acknowledged; no change to any episode"
    if message.cancellation is None:
        return await apply_stay(uow, site, stay, message.recorded_at, now)
    client = await repository.client_by_ehr_id(uow.session, site, stay.patient.ehr_id)
    episode = None if client is None else await uow.episodes.for_stay(client.id, stay.encounter.ehr_id)
    if episode is None:
        return "no such stay; cancellation recorded without effect"
    if message.cancellation is Cancellation.DISCHARGE:
        return episode.cancel_discharge(stay, now)
    if message.cancellation is Cancellation.TRANSFER:
        return episode.cancel_transfer(stay, now)
    previous = None
    if episode.previous_episode_id is not None:
        previous = await uow.episodes.get(episode.previous_episode_id, for_update=True)
    return episode.withdraw(stay, previous, now)


async def _count_in(uow: UnitOfWork, feed_id: str, now: datetime, answer: FeedAnswer) -> None:
    values: dict[str, object] = {"last_message_at": now}
    if answer.ack is AckCode.ACCEPT:
        values["accepted"] = Hl7Feed.accepted + 1
    else:
        values |= {"refused": Hl7Feed.refused + 1, "last_error_at": now, "last_error": _error_text(answer)}
    await uow.session.execute(update(Hl7Feed).where(Hl7Feed.id == feed_id).values(**values))


async def _count(
    sessions: SessionFactory, feed_id: str, text: str, where: ErrorLocation, ack: AckCode = AckCode.REJECT
) -> None:
    now = utcnow()
    error = _error_text(FeedAnswer(ack, text, where))
    async with transaction(sessions) as session:
        await session.execute(
            update(Hl7Feed)
            .where(Hl7Feed.id == feed_id)
            .values(refused=Hl7Feed.refused + 1, last_error_at=now, last_error=error, last_message_at=now)
        )


def _error_text(answer: FeedAnswer) -> str:
    return f"{answer.ack.value} {_location(answer.error) or ''}: {answer.text}"


# --- registering feeds and their health ----------------------------------------------------------------------


@dataclass(frozen=True)
class Merge:
    """An A40 the coordinator has to look at: Peerway does not merge clients by itself."""

    received_at: datetime
    merged_patient_id: str  # MRG-1: the EHR id that goes away
    surviving_patient_id: str | None  # PID-3


@dataclass(frozen=True)
class FeedView:
    id: str
    site: str
    port: int
    facility: str
    timezone: str
    status: str  # waiting | ok | error | silent
    last_message_at: datetime | None
    last_error_at: datetime | None
    last_error: str | None
    accepted: int
    refused: int
    merges: tuple[Merge, ...]  # newest first


async def add_feed(
    sessions: SessionFactory, feed_id: str, site: str, port: int, facility: str = ANY_FACILITY, timezone: str = "UTC"
) -> FeedView:
    """Register a feed: messages on `port` from `facility` (or from any facility) speak for `site`."""
    if not feed_id or len(feed_id) > 64:
        raise InvalidResource("a feed id has 1 to 64 characters", "id")
    if not 1 <= port <= 65535:
        raise InvalidResource("port must be from 1 to 65535", "port")
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidResource(f"{timezone!r} is not an IANA time zone", "timezone") from None
    async with transaction(sessions) as session:
        if await session.get(Site, site) is None:
            raise NotFound(f"no site {site!r}", "site")
        if await session.get(Hl7Feed, feed_id) is not None:
            raise Conflict(f"feed {feed_id!r} exists", "id")
        await store.lock_port(session, port)  # two sites registering one port at once: one of them waits
        on_port = [f for f in await store.feeds(session) if f.port == port]
        taken = [f for f in on_port if f.facility == facility]
        if taken:
            raise Conflict(f"port {port} with facility {facility or '(any)'} is feed {taken[0].id}", "facility")
        # MSH-4 is message content: on a port shared by two sites, a sender could pick the other site by writing
        # its facility. A port belongs to one site; facilities only choose among that site's feeds.
        others = [f for f in on_port if f.site != site]
        if others:
            raise Conflict(
                f"port {port} belongs to site {others[0].site} (feed {others[0].id}): a port serves one site only",
                "port",
            )
        session.add(
            Hl7Feed(
                id=feed_id, site=site, port=port, facility=facility, timezone=timezone,
                created_at=utcnow(), accepted=0, refused=0,
            )
        )  # fmt: skip
    [view] = [v for v in await list_feeds(sessions) if v.id == feed_id]
    return view


async def list_feeds(
    sessions: SessionFactory, site: str | None = None, silence: timedelta = timedelta(hours=1)
) -> list[FeedView]:
    """Every feed (of one site) with its health: waiting (nothing yet), ok, error (the last message was refused)
    or silent (nothing for longer than `silence`), and the merges the coordinator has to look at."""
    now = utcnow()
    async with sessions() as session:
        rows: Sequence[Hl7Feed] = await store.feeds(session, site)
        views = []
        for row in rows:
            merges = tuple(
                Merge(m.received_at, m.merged_patient_id or "", m.surviving_patient_id)
                for m in await store.merges(session, [row.id])
            )
            views.append(
                FeedView(
                    id=row.id, site=row.site, port=row.port, facility=row.facility, timezone=row.timezone,
                    status=_status(row, now, silence), last_message_at=row.last_message_at,
                    last_error_at=row.last_error_at, last_error=row.last_error, accepted=row.accepted,
                    refused=row.refused, merges=merges,
                )
            )  # fmt: skip
    return views


def _status(row: Hl7Feed, now: datetime, silence: timedelta) -> str:
    if row.last_message_at is None:
        return "waiting"
    if now - row.last_message_at > silence:
        return "silent"
    if row.last_error_at is not None and row.last_error_at >= row.last_message_at:
        return "error"
    return "ok"


async def feed_ports(sessions: SessionFactory) -> list[int]:
    """The ports the listener binds: one per port that has a feed."""
    async with sessions() as session:
        return sorted({row.port for row in await store.feeds(session)})
