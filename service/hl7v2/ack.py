"""Original-mode acknowledgements: MSH (sender and receiver swapped, the message's version), MSA (code, the
message's MSH-10, text) and, for AE and AR, ERR naming the segment and field (ERR-1 for 2.3 and 2.4, ERR-2/3/4
from 2.5 on). Built from the message's MSH as python-hl7 parsed it, with its own encoding characters."""

from __future__ import annotations

from datetime import UTC, datetime

import hl7

from service.app.clock import new_id
from service.app.feeds import FeedAnswer
from service.domain.adt import AckCode

ERROR_NAMES = {
    "100": "Segment sequence error",
    "101": "Required field missing",
    "102": "Data type error",
    "103": "Table value not found",
    "200": "Unsupported message type",
    "202": "Unsupported processing id",
    "203": "Unsupported version id",
    "207": "Application internal error",
}
FALLBACK_HEADER = "MSH|^~\\&|||||||ACK||P|2.5"
MSA_3_WITHDRAWN = ("2.7", "2.8")  # versions without MSA-3 (text message): the text is ERR-8's


def ack_for(text: str, answer: FeedAnswer, encoding: str = "utf-8") -> bytes:
    """The ACK for `text` (whatever it is: a message without a readable MSH gets an ACK with an empty MSA-2), in
    the codec the message was read with (`encoding`), MSH-18 echoed when the message had one. From version 2.7,
    where MSA-3 is withdrawn, the text goes to ERR-8 (user message) of an AE or AR, and an AA carries none."""
    message = _header(text)
    sep = str(message.separators)  # "\r|~^&": segment, field, repetition, component, subcomponent
    field, component = sep[1], sep[3]
    characters = sep[3] + sep[2] + _escape_character(message) + sep[4]  # MSH-2

    def msh(number: int, part: int = 1) -> str:
        return str(message.escape(_raw(message, number, part)))

    def ours(value: str) -> str:  # the sender's encoding characters may be letters or digits: escape ours too
        return str(message.escape(value))

    trigger = msh(9, 2)
    kind = component.join((ours("ACK"), trigger, ours("ACK"))) if trigger else ours("ACK")
    header = [
        "MSH", characters, ours("PEERWAY"), ours("PEERWAY"), _raw_field(message, 3), _raw_field(message, 4),
        ours(datetime.now(UTC).strftime("%Y%m%d%H%M%S+0000")), "", kind,
        ours(new_id()[:20]), msh(11) or ours("P"), msh(12) or ours("2.5"),
    ]  # fmt: skip
    charset = _raw_field(message, 18)
    if charset:
        header += ["", "", "", "", "", charset]  # MSH-13 to 17 left empty
    withdrawn = _raw(message, 12).startswith(MSA_3_WITHDRAWN)
    msa = ["MSA", ours(answer.ack.value), msh(10)] + ([] if withdrawn else [ours(answer.text[:200])])
    segments = [field.join(header), field.join(msa)]
    if answer.error is not None and answer.ack is not AckCode.ACCEPT:
        segments.append(_err(message, answer, user_message=ours(answer.text[:200]) if withdrawn else ""))
    return ("\r".join(segments) + "\r").encode(encoding, errors="replace")


def _raw(message: hl7.Message, number: int, component: int = 1) -> str:
    try:
        return str(message.extract_field("MSH", 1, number, 1, component, 1))
    except (KeyError, IndexError, TypeError):
        return ""


def _raw_field(message: hl7.Message, number: int) -> str:
    """A whole MSH field as sent (components and all), or "" when absent."""
    try:
        return str(message.segment("MSH")[number])
    except (KeyError, IndexError):
        return ""


def _escape_character(message: hl7.Message) -> str:
    return str(getattr(message, "esc", "\\"))


def _header(text: str) -> hl7.Message:
    first = text.replace("\r\n", "\r").replace("\n", "\r").lstrip("\r").split("\r", 1)[0]
    if first.startswith("MSH") and len(first) > 8:
        try:
            return hl7.parse(first)
        except Exception:  # noqa: S110 - an unreadable header is answered with the fallback below
            pass
    return hl7.parse(FALLBACK_HEADER)


def _err(message: hl7.Message, answer: FeedAnswer, user_message: str = "") -> str:
    """ERR naming where the message is wrong (nothing when the error is ours: code 207), every part escaped with
    the message's own encoding characters."""
    where = answer.error
    assert where is not None
    sep = str(message.separators)
    field, component, subcomponent = sep[1], sep[3], sep[4]
    code, name, table = (str(message.escape(x)) for x in (where.code, ERROR_NAMES.get(where.code, ""), "HL70357"))
    located = (str(message.escape(x)) for x in (where.segment, str(where.sequence), str(where.field)))
    parts = list(located) if where.segment else ["", "", ""]
    version = _raw(message, 12)
    if version.startswith(("2.3", "2.4")):
        return f"ERR{field}" + component.join((*parts, subcomponent.join((code, name, table))))
    location = component.join(parts) if where.segment else ""
    err = f"ERR{field}{field}{location}{field}{component.join((code, name, table))}{field}E"
    return err + field * 4 + user_message if user_message else err  # ERR-8, the user message
