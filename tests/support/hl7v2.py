"""HL7 v2 ADT messages as interface engines send them (written for these tests), and an MLLP client.

Quirks on purpose: a Z-segment, repeated PID-3 (MRN and health card), escape sequences in names, EVN, PV2,
versions 2.3 to 2.8, and either \\r or \\n between segments.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from sqlalchemy import func, select

from service.app.feeds import add_feed
from service.hl7v2.listener import MllpListener
from service.settings import Settings
from service.store.db import SessionFactory, create_engine, session_factory
from service.store.feeds import Hl7Message
from service.store.models import Client, Episode

START, END = b"\x0b", b"\x1c\r"
ISO_FACILITY = "NORTHGEN^2.16.840.1.113883.3.9999^ISO"


@dataclass(frozen=True)
class Visit:
    mrn: str = "N1001"
    visit: str = "V5001"
    admitted: str = "20261101083000"
    discharged: str = ""
    disposition: str = ""
    expected: str = ""
    patient_class: str = "I"
    readmission: str = ""


def adt(
    trigger: str,
    control_id: str,
    visit: Visit = Visit(),
    *,
    facility: str = ISO_FACILITY,
    version: str = "2.5.1",
    separator: str = "\r",
    sent: str = "20261130101500",
    extra: tuple[str, ...] = (),
) -> str:
    structure = {"A08": "ADT_A01", "A13": "ADT_A01", "A11": "ADT_A09", "A12": "ADT_A12"}.get(trigger, f"ADT_{trigger}")
    segments = [
        f"MSH|^~\\&|EPIC|{facility}|PEERWAY|PEERWAY|{sent}||ADT^{trigger}^{structure}|{control_id}|P|{version}|||AL|NE",
        f"EVN|{trigger}|{sent}|||OPS^Ops^Clerk",
        f"PID|1||{visit.mrn}^^^NORTHGEN&2.16.840.1.113883.3.9999&ISO^MR~9876543210^^^ON^JHN||"
        "O\\S\\Brien\\T\\Sons^Jane^Q^^Ms||19800214|F|||12 Queen St\\R\\Unit 4^^Toronto^ON^M5H 2N2^CA||"
        "^PRN^PH^^1^416^5550101|^WPN^PH^^1^416^5550102",
        pv1(visit),
        f"PV2|||^Depression||||||{visit.expected}",
        "ZPW|custom^site^data|with~repeats",
        *extra,
    ]
    return separator.join(segments) + separator


def pv1(visit: Visit) -> str:
    fields = [""] * 46
    fields[0], fields[1], fields[2], fields[3] = "PV1", "1", visit.patient_class, "5W^501^A^NORTHGEN"
    fields[7], fields[10], fields[13], fields[14] = "1234^Welby^Marcus", "PSY", visit.readmission, "7"
    fields[19], fields[36] = f"{visit.visit}^^^NORTHGEN^VN", visit.disposition
    fields[44], fields[45] = visit.admitted, visit.discharged
    return "|".join(fields)


def merge(control_id: str, surviving: str, prior: str) -> str:
    return "\r".join(
        [
            f"MSH|^~\\&|EPIC|{ISO_FACILITY}|PEERWAY|PEERWAY|20261130101500||ADT^A40^ADT_A39|{control_id}|P|2.5.1",
            "EVN|A40|20261130101500",
            f"PID|1||{surviving}^^^NORTHGEN^MR||Doe^Jane",
            f"MRG|{prior}^^^NORTHGEN^MR",
        ]
    )


def frame(text: str | bytes) -> bytes:
    body = text.encode() if isinstance(text, str) else text
    return START + body + END


class MllpClient:
    """One TCP connection to the listener, as an interface engine holds it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, port: int) -> MllpClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def send(self, text: str | bytes) -> Ack:
        self.writer.write(frame(text))
        await self.writer.drain()
        return await self.receive()

    async def receive(self, encoding: str = "utf-8") -> Ack:
        block = await self.reader.readuntil(END)
        assert block.startswith(START), block
        return Ack(block[1:-2].decode(encoding))  # strict: an ACK in another codec fails here

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


@dataclass(frozen=True)
class Ack:
    text: str

    def segment(self, name: str) -> list[str]:
        for segment in self.text.split("\r"):
            if segment.startswith(name + "|"):
                return segment.split("|")
        raise AssertionError(f"no {name} in {self.text!r}")

    @property
    def code(self) -> str:
        return self.segment("MSA")[1]

    @property
    def control_id(self) -> str:
        return self.segment("MSA")[2]

    @property
    def message(self) -> str:
        return self.segment("MSA")[3] if len(self.segment("MSA")) > 3 else ""


async def send_one(port: int, text: str | bytes) -> Ack:
    client = await MllpClient.connect(port)
    try:
        return await client.send(text)
    finally:
        await client.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Feed:
    port: int
    sessions: SessionFactory


@asynccontextmanager
async def running_feed(settings: Settings, extension: str | None = None) -> AsyncIterator[Feed]:
    """A feed of the default site bound to NORTHGEN (times in Toronto) on a free port, with the listener on it."""
    configured = settings.model_copy(update={"expected_discharge_extension": extension})
    engine = create_engine(settings.database_url)
    sessions = session_factory(engine)
    port = free_port()
    await add_feed(sessions, "north-adt", "default", port, "NORTHGEN", "America/Toronto")
    listener = MllpListener(sessions, configured)
    await listener.start([port])
    try:
        yield Feed(port, sessions)
    finally:
        await listener.close()
        await engine.dispose()


async def stored(sessions: SessionFactory) -> tuple[list[Episode], list[Client], int]:
    """The episodes (oldest first), the clients, and how many messages were answered."""
    async with sessions() as session:
        episodes = list((await session.execute(select(Episode).order_by(Episode.created_at))).scalars())
        clients = list((await session.execute(select(Client))).scalars())
        messages = (await session.execute(select(func.count()).select_from(Hl7Message))).scalar_one()
    return episodes, clients, messages
