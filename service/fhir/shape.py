"""The shape of a JSON body, checked on its bytes before any parser reads it: nesting depth, the length of each
string and of each number. Python's json module recurses (RecursionError past ~1,000 levels), refuses integers
of more than 4,300 digits with a bare ValueError, and keeps any string whole; pydantic and our own checks
recurse too. So a body is scanned once, without recursion, and refused with a 4xx naming the element.

The scan is a regular-expression lexer over the bytes: strings (skipped whole, so a bracket inside one is not
counted), brackets, and numbers long enough to refuse. Anything it does not understand is left for json.loads
to refuse; an unterminated string only makes the scan count more brackets, never fewer.

The checks read what json.loads will read: json.loads takes bytes with a UTF-8 byte order mark, and UTF-16 or
UTF-32 ones, so the bytes checked are those of the text it decodes (a BOM-led body was once passed unchecked and
its deep extensions then reached a recursive check: a 500). A body with a BOM is read, as json.loads reads it.

A quick pass with bytes operations (_fits) answers for bodies up to FAST_PASS_BYTES, and hands on the JSON value it
read (a route then need not read the body again): it holds about 30 times the
body in memory at once, and the check runs before any credential is verified, so larger bodies go to the lexer,
which holds no more than the body and its open brackets.

Limits (chosen for Peerway's inputs: Da Vinci and subscription Bundles, Consent, PeerContact, /api bodies):
- depth 64: a resource in a Bundle entry with extensions nested ~25 levels still fits;
- 4,096 characters per string, except Narrative.div (64 KiB) and Attachment.data (1 MiB of base64);
- 40 characters per number (FHIR decimals keep 18 significant digits; integer64 travels as a string).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import accumulate
from types import MappingProxyType

from service.errors import BadRequest, InvalidResource, TooLong
from service.fhir.validation import fhirpath

MAX_DEPTH = 64
MAX_STRING = 4096
MAX_NUMBER = 40
LONG_ELEMENTS: Mapping[str, int] = MappingProxyType({"div": 64 * 1024, "data": 1024 * 1024})
FAST_PASS_BYTES = 256 * 1024  # a discharge Bundle is about 20 KB
_UTF8_BOM = b"\xef\xbb\xbf"

_OPEN, _CLOSE, _QUOTE = frozenset(b"[{"), frozenset(b"]}"), ord('"')
_STRING = rb'"([^"\\]*(?:\\.[^"\\]*)*)"'
# Strings (group 1; group 2 says it is a key), brackets, and numbers past MAX_NUMBER characters.
_SCAN = re.compile(_STRING + rb"(\s*:)?|[\[\]{}]|-?[0-9][0-9.eE+\-]{%d,}" % MAX_NUMBER)
# The full lexer, run only to name where a fault is.
_TOKENS = re.compile(_STRING + rb"|[\[\]{},:]")
_KEYED = re.compile(_STRING + rb"(\s*:)?|[\[\]{}]")
# For the quick pass over well-formed bodies (_fits): what is not a bracket, each bracket's step in depth, and the
# bytes a number is written with (each made "n", anything else a space).
_NOT_BRACKETS = bytes(c for c in range(256) if c not in b"[]{}")
_STEP = [1 if c in b"[{" else -1 if c in b"]}" else 0 for c in range(256)]
_NUMBER_BYTES = bytes.maketrans(
    bytes(range(256)), bytes(ord("n") if c in b"0123456789.eE+-" else ord(" ") for c in range(256))
)


@dataclass(frozen=True)
class JsonLimits:
    depth: int = MAX_DEPTH
    string: int = MAX_STRING
    number: int = MAX_NUMBER
    long_elements: Mapping[str, int] = field(default_factory=lambda: LONG_ELEMENTS)


def looks_like_json(body: bytes) -> bool:
    """Whether the text json.loads reads from the body starts (after white space) as a JSON object or array."""
    start = readable(body).lstrip()[:1]
    return start in (b"{", b"[")


@dataclass(frozen=True)
class Read:
    """The JSON value json.loads read from a body (wrapped: JSON's null is a value too)."""

    value: object


def check_shape(body: bytes, limits: JsonLimits = JsonLimits()) -> Read | None:
    """Refuse a body nested deeper than `limits.depth`, or holding a string or a number longer than its element
    may be, with a 4xx naming the element (its FHIRPath when the body is a resource, else body.<field>). What is
    checked is the text json.loads reads from the body (see readable). Answers json.loads(body) when the check
    read it (the quick pass over a well-formed UTF-8 body), else None."""
    text = readable(body)
    if len(text) <= FAST_PASS_BYTES and (read := _fits(text, limits)) is not None:
        return read
    _scan(text, limits)
    return None


def readable(body: bytes) -> bytes:
    """The UTF-8 bytes of the text json.loads reads from `body`: without a UTF-8 byte order mark, and decoded
    from UTF-16 or UTF-32 as json.loads decodes them. Bytes it cannot decode are answered as they are (json.loads
    refuses them too)."""
    encoding = json.detect_encoding(body)
    if encoding == "utf-8":
        return body
    if encoding == "utf-8-sig":
        return body[len(_UTF8_BOM) :]
    try:
        return body.decode(encoding, "surrogatepass").encode("utf-8", "surrogatepass")
    except UnicodeError:
        return body


def _fits(body: bytes, limits: JsonLimits) -> Read | None:
    """Whether a well-formed UTF-8 JSON body is within every limit, found with C-speed bytes operations (about a
    third of the lexer's time for a discharge Bundle), answering what json.loads read of it. None means only "not
    sure": the lexer then decides and
    names the fault. A body json.loads reads is tokenised as the lexer does it (strings between unescaped quotes,
    no backslash outside them), so splitting it at its unescaped quotes gives the strings (odd parts) and what is
    between them (even parts), and each limit can be checked on those:
    - strings: no raw text longer than `limits.string` (the longer caps of LONG_ELEMENTS go to the lexer);
    - numbers: no run of number bytes (digits, . e E + -) as long as a refused number, outside strings;
    - depth: the running count of brackets outside strings never above `limits.depth`."""
    if json.detect_encoding(body) not in ("utf-8", "utf-8-sig"):
        return None
    try:
        read = Read(json.loads(body))
    except (ValueError, RecursionError):
        return None  # the lexer sees what json.loads refused, then json.loads refuses it again where it is read
    if b"\\" in body:  # escapes keep their length: pairs of backslashes first, then escaped quotes
        body = body.replace(b"\\\\", b"..")
    parts = body.replace(b'\\"', b"..").split(b'"')
    if max(map(len, parts[1::2]), default=0) > limits.string:
        return None
    outside = b"".join(parts[0::2])
    if b"n" * (MAX_NUMBER + 1) in outside.translate(_NUMBER_BYTES):
        return None
    levels = list(accumulate(map(_STEP.__getitem__, outside.translate(None, _NOT_BRACKETS))))
    return read if not levels or max(levels) <= limits.depth else None


def _scan(body: bytes, limits: JsonLimits) -> None:
    """The lexer: every string, bracket and long number of the body in turn, refusing the first fault."""
    names: list[bytes | None] = []  # per open container: the element it holds (its key, or its array's)
    in_object: list[bool] = []
    key: bytes | None = None
    for match in _SCAN.finditer(body):
        first = body[match.start()]
        if first == _QUOTE:
            raw = match.group(1)
            if match.group(2):
                key = raw
                name = raw
            else:
                name = key if in_object and in_object[-1] else (names[-1] if names else None)
            if len(raw) > limits.string:
                cap = limits.long_elements.get(name.decode("latin-1"), limits.string) if name else limits.string
                if len(raw) > cap and _characters(raw) > cap:
                    where = _expression(body, match.start())
                    raise TooLong(f"{where}: text longer than {cap} characters", where)
        elif first in _OPEN:
            if len(names) >= limits.depth:
                where = _expression(body, match.start())
                raise BadRequest(f"the JSON is nested deeper than {limits.depth} levels", where)
            names.append(key if in_object and in_object[-1] else (names[-1] if names else None))
            in_object.append(first == ord("{"))
            key = None
        elif first in _CLOSE:
            if names:
                names.pop()
                in_object.pop()
            key = None
        else:
            where = _expression(body, match.start())
            raise InvalidResource(f"{where}: a number longer than {limits.number} characters", where)


def _characters(raw: bytes) -> int:
    """How many characters a JSON string's raw text stands for (escapes decoded)."""
    try:
        return len(json.loads(b'"' + raw + b'"'))
    except ValueError:
        return len(raw)


def _expression(body: bytes, offset: int) -> str:
    """The FHIRPath (or body.<field> path) of the value that starts at `offset`: the lexer is run again up to
    there, this time keeping each open container's current key or index."""
    frames: list[list[int | str]] = []  # [step]: a key (str) in an object, an index (int) in an array
    expecting_key: list[bool] = []  # per frame: an object whose next string is a key
    root: str | None = None
    for match in _TOKENS.finditer(body, 0, offset):
        token = body[match.start()]
        if token == _QUOTE:
            if expecting_key and expecting_key[-1]:
                frames[-1][0] = _decoded(match.group(1))
                expecting_key[-1] = False
            elif len(frames) == 1 and frames[0][0] == "resourceType":
                root = _decoded(match.group(1))
        elif token in _OPEN:
            frames.append(["" if token == ord("{") else 0])
            expecting_key.append(token == ord("{"))
        elif token in _CLOSE:
            if frames:
                frames.pop()
                expecting_key.pop()
        elif token == ord(",") and frames:
            step = frames[-1][0]
            if isinstance(step, int):
                frames[-1][0] = step + 1
            else:
                expecting_key[-1] = True
    root = root or _top_level_type(body) or "body"
    return fhirpath(root, [frame[0] for frame in frames if frame[0] != ""])


def _top_level_type(body: bytes) -> str | None:
    """The resourceType of the object the body is, wherever among its keys it comes."""
    depth = 0
    after_key = False
    for match in _KEYED.finditer(body):
        token = body[match.start()]
        if token == _QUOTE:
            if depth == 1 and after_key:
                return _decoded(match.group(1))
            after_key = depth == 1 and match.group(2) is not None and match.group(1) == b"resourceType"
        else:
            depth += 1 if token in _OPEN else -1
            after_key = False
    return None


def _decoded(raw: bytes) -> str:
    try:
        text = json.loads(b'"' + raw + b'"')
    except ValueError:
        text = raw.decode("utf-8", "replace")
    return str(text)[:64]
