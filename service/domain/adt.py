"""What an HL7 v2 ADT message says, as the domain reads it: the trigger event, the stay it describes (the same
Stay a FHIR notification yields), and the answer the sender gets (original-mode acknowledgement codes).

Pure: service/fhir/v2.py builds these from the wire; service/app/feeds.py applies them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from service.domain.stay import Stay


class AckCode(StrEnum):
    """HL7 table 0008, original mode."""

    ACCEPT = "AA"  # processed (or recorded without effect)
    ERROR = "AE"  # understood but refused: the sender should fix the message, not resend it as is
    REJECT = "AR"  # not processed at all (framing, header, version, an unregistered sender): nothing stored


class Cancellation(StrEnum):
    """The ADT cancellations Peerway acts on."""

    ADMIT = "A11"
    TRANSFER = "A12"
    DISCHARGE = "A13"


MERGE_TRIGGERS = frozenset({"A34", "A40"})  # merge patient (A34 is A40's pre-2.3.1 form)


@dataclass(frozen=True)
class ErrorLocation:
    """Where a refused message is wrong: ERR-2 (segment, sequence, field) and its HL7 table 0357 code."""

    segment: str
    field: int
    code: str  # 100 segment sequence, 101 required field missing, 102 data type, 103 table value, 200..207
    sequence: int = 1


class AdtRefused(Exception):
    """An ADT message Peerway will not apply; says which acknowledgement and where (ids only, no PHI)."""

    def __init__(self, ack: AckCode, text: str, where: ErrorLocation) -> None:
        super().__init__(text)
        self.ack = ack
        self.text = text
        self.where = where


@dataclass(frozen=True)
class Sender:
    """MSH-3 and MSH-4 as sent: a feed is bound to the sending facility; replays are keyed by the sender."""

    application: str
    facility: str

    @property
    def key(self) -> str:
        return f"{self.application}^{self.facility}"


@dataclass(frozen=True)
class AdtMessage:
    """One ADT message: who sent it, its control id (MSH-10), its trigger and what it says about a stay."""

    control_id: str
    sender: Sender
    trigger: str  # A01, A03, ...
    version: str
    recorded_at: datetime | None  # EVN-2, else MSH-7
    stay: Stay | None  # None: a message about no stay we keep (A04, A40, ...)
    cancellation: Cancellation | None = None
    merged_patient_id: str | None = None  # A40: MRG-1, the id that is merged away
    surviving_patient_id: str | None = None  # A40: PID-3
