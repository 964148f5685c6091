"""FHIR search: the parameters each type serves (one list, checked by the routers and shown by the
CapabilityStatement), paging cursors, and `date` values with the ge/gt/le/lt/eq prefixes."""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

from service.errors import BadRequest

_DATE = re.compile(r"^(?P<prefix>eq|ge|gt|le|lt)?(?P<value>\d{4}(-\d{2}(-\d{2}(T.+)?)?)?)$")


def _range(value: str) -> tuple[datetime, datetime]:
    """The instant range [low, high) a FHIR date/dateTime of any precision covers."""
    if "T" in value:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        if moment.tzinfo is None:
            raise ValueError("a time needs a zone")
        moment = moment.astimezone(UTC)  # OverflowError at the ends of time: 0001-01-01T00:00+05:00
        return moment, moment + timedelta(seconds=1)
    parts = [int(p) for p in value.split("-")]
    low = datetime(parts[0], parts[1] if len(parts) > 1 else 1, parts[2] if len(parts) > 2 else 1, tzinfo=UTC)
    if len(parts) == 3:
        return low, low + timedelta(days=1)
    if len(parts) == 2:
        return low, datetime(low.year + (low.month == 12), low.month % 12 + 1, 1, tzinfo=UTC)
    return low, datetime(low.year + 1, 1, 1, tzinfo=UTC)


def date_bounds(values: Sequence[str], parameter: str = "date") -> tuple[datetime | None, datetime | None]:
    """`date=ge2026-01-01&date=lt2026-02` -> (since, until), until exclusive; several values intersect."""
    since: datetime | None = None
    until: datetime | None = None
    for raw in values:
        match = _DATE.match(raw)
        try:
            if match is None:
                raise ValueError(raw)
            low, high = _range(match["value"])
        except (ValueError, OverflowError):  # OverflowError: the last second of year 9999
            raise BadRequest(
                f"{parameter}={raw!r}: use a FHIR date or dateTime (with zone), prefixed ge, gt, le, lt or eq",
                parameter,
            ) from None
        prefix = match["prefix"] or "eq"
        lower = {"ge": low, "gt": high, "eq": low}.get(prefix)
        upper = {"le": high, "lt": low, "eq": high}.get(prefix)
        if lower is not None:
            since = lower if since is None else max(since, lower)
        if upper is not None:
            until = upper if until is None else min(until, upper)
    return since, until


# --- which searches are served: the one list the routers check and the CapabilityStatement shows ----------------

DEFAULT_COUNT = 20  # a page when _count is not given
MAX_COUNT = 100  # the largest page served; a larger _count is lowered to it (FHIR allows the server to)
# Values one token parameter may list in a search (comma-separated, over its repeats): each is a bind parameter
# of the query, and the databases take some 32,000 at most in one statement.
MAX_TOKEN_VALUES = 5000


@dataclass(frozen=True)
class Token:
    """One value of a token search parameter (FHIR search, token): `code` alone matches whatever the system,
    `system|code` both, `|code` a code without a system, `system|` any code in the system. None: any."""

    system: str | None
    code: str | None

    @classmethod
    def parse(cls, text: str) -> Token:
        if "|" not in text:
            return cls(None, text)
        system, _, code = text.partition("|")
        return cls(system, code or None)


@dataclass(frozen=True)
class SearchParam:
    name: str
    type: str  # the FHIR search parameter type, as the CapabilityStatement lists it
    documentation: str


_LAST_UPDATED = SearchParam("_lastUpdated", "date", "when the resource last changed (ge, gt, le, lt, eq)")
_ID = SearchParam("_id", "token", "the resource id; several comma-separated")
_PATIENT = SearchParam("patient", "reference", "the client: Patient/<client id>, or the site's EHR Patient id")

# The code system of each searched resource's status: `status=<system>|<code>` is served for it (another system
# matches nothing).
STATUS_SYSTEMS = {
    "Consent": "http://hl7.org/fhir/consent-state-codes",
    "Encounter": "http://hl7.org/fhir/encounter-status",
}

SEARCH_PARAMETERS: dict[str, tuple[SearchParam, ...]] = {
    "Consent": (
        _PATIENT,
        _ID,
        SearchParam("status", "token", "draft | proposed | active | rejected | inactive | entered-in-error"),
        SearchParam(
            "identifier", "token", "any Consent.identifier: value, system|value, |value (no system) or system|"
        ),
        _LAST_UPDATED,
    ),
    "AuditEvent": (_PATIENT, SearchParam("date", "date", "when recorded (ge, gt, le, lt, eq)"), _LAST_UPDATED),
    "Encounter": (
        SearchParam("patient", "reference", "one of the calling peer's clients; any other gives an empty Bundle"),
        _ID,
        SearchParam("status", "token", "finished | entered-in-error"),
        SearchParam("identifier", "token", "the contact's identifier as system|value"),
        _LAST_UPDATED,
    ),
}
_URL = SearchParam("url", "uri", "the canonical URL; url|version for that version")
# Peerway's own conformance resources, served from fhir_profiles/data (service/fhir/canonical.py): read, vread and
# search by url or id, without a token. The one list: canonical.py serves it, capability.py declares it.
CONFORMANCE_TYPES = (
    "StructureDefinition",
    "CodeSystem",
    "ValueSet",
    "OperationDefinition",
    "SearchParameter",
    "Measure",
    "Questionnaire",
)
for _conformance in CONFORMANCE_TYPES:
    SEARCH_PARAMETERS[_conformance] = (_URL, _ID)
# Result parameters every search takes; _page carries our opaque paging cursor.
RESULT_PARAMETERS = frozenset({"_count", "_sort", "_total", "_summary", "_format", "_pretty", "_page", "_elements"})
# What _elements always keeps (R4 search.html: mandatory elements are returned whether asked for or not).
MANDATORY_ELEMENTS: dict[str, frozenset[str]] = {
    "Consent": frozenset({"status", "scope", "category"}),
    "AuditEvent": frozenset({"type", "recorded", "agent", "source"}),
    "Encounter": frozenset({"status", "class"}),
}
_ELEMENT = re.compile(r"[a-zA-Z][a-zA-Z0-9]{0,63}")
SORTS = {"_lastUpdated": False, "-_lastUpdated": True}  # _sort value -> descending
_MAX_CURSOR = 400  # ours are ~120 characters; a longer one was not given out here
_ONCE = frozenset({"patient", "_count", "_sort", "_total", "_summary", "_format", "_pretty", "_page", "_elements"})


@dataclass(frozen=True)
class Cursor:
    """Where a page starts: after (forward) or before (backward) the row with this (last updated, id)."""

    forward: bool
    updated: datetime
    id: str

    def token(self) -> str:
        raw = json.dumps(["n" if self.forward else "p", self.updated.isoformat(), self.id], separators=(",", ":"))
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @classmethod
    def parse(cls, token: str) -> Cursor:
        try:
            if len(token) > _MAX_CURSOR:
                raise ValueError("too long")
            direction, updated, id_ = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
            moment = datetime.fromisoformat(updated)
            if direction not in ("n", "p") or not isinstance(id_, str) or moment.tzinfo is None:
                raise ValueError(token)
            moment = moment.astimezone(UTC)  # the stores compare UTC; the ends of time overflow here, not there
            if len(id_) > 200 or "\x00" in id_:  # keys are ids (a Consent's "<site>|<id>"): short, no NUL
                raise ValueError(token)
            id_.encode()  # a lone surrogate cannot reach a query (UnicodeEncodeError is a ValueError)
        except (ValueError, TypeError, OverflowError, binascii.Error, UnicodeDecodeError, RecursionError):
            raise BadRequest("_page is not a cursor this server gave out: follow the Bundle's links", "_page") from None
        return cls(direction == "n", moment, id_)


@dataclass(frozen=True)
class SearchRequest:
    """A search as the use cases see it: the served criteria, one page, and what else the client asked for."""

    resource_type: str
    criteria: dict[str, tuple[str, ...]]
    count: int = DEFAULT_COUNT
    descending: bool = False
    cursor: Cursor | None = None
    total: bool = False  # count every match (_total=accurate, _summary=count)
    summary_count: bool = False
    ignored: tuple[str, ...] = ()
    pretty: bool = False
    elements: tuple[str, ...] = ()  # _elements: only these top-level elements (and the mandatory ones)

    def one(self, name: str) -> str | None:
        values = self.criteria.get(name)
        return values[0] if values else None

    def tokens(self, name: str) -> tuple[str, ...]:
        """A token parameter's values: comma-separated values OR; repeating the parameter ANDs, which for a
        single-valued element is served as the intersection."""
        sets = [set(v.split(",")) for v in self.criteria.get(name, ())]
        if not sets:
            return ()
        return tuple(sorted(set.intersection(*sets)))

    def query(self, cursor: Cursor | None = None) -> str:
        """The query string of this search (its served parameters), optionally at another page."""
        pairs = [(name, value) for name, values in self.criteria.items() for value in values]
        pairs.append(("_count", str(self.count)))
        if self.descending:
            pairs.append(("_sort", "-_lastUpdated"))
        if self.total and not self.summary_count:
            pairs.append(("_total", "accurate"))
        if self.summary_count:
            pairs.append(("_summary", "count"))
        if self.pretty:
            pairs.append(("_pretty", "true"))
        if self.elements:
            pairs.append(("_elements", ",".join(self.elements)))
        if cursor is not None:
            pairs.append(("_page", cursor.token()))
        return urlencode(pairs)


def parse_search(resource_type: str, items: Sequence[tuple[str, str]], *, lenient: bool) -> SearchRequest:
    """The query of a search, checked against what this type serves: anything else is a 400 naming the
    parameter, unless the client asked for lenient handling (then it is left out, and said so)."""
    served = {p.name: p for p in SEARCH_PARAMETERS[resource_type]}
    criteria: dict[str, list[str]] = {}
    results: dict[str, str] = {}
    ignored: list[str] = []
    for name, value in items:
        if value == "":  # FHIR: a parameter without a value is ignored
            continue
        if name in served:
            if name in _ONCE and name in criteria:
                raise BadRequest(f"{name} may be given once", name)
            criteria.setdefault(name, []).append(value)
        elif name in RESULT_PARAMETERS:
            if name in results:
                raise BadRequest(f"{name} may be given once", name)
            results[name] = value
        elif lenient:
            ignored.append(name)
        else:
            known = ", ".join(sorted(served) + sorted(RESULT_PARAMETERS - {"_page"}))
            raise BadRequest(
                f"{resource_type} search does not support {name!r} (supported: {known});"
                " send Prefer: handling=lenient to have unsupported parameters ignored",
                name,
            )
    for name, values in criteria.items():
        if served[name].type == "token" and sum(value.count(",") + 1 for value in values) > MAX_TOKEN_VALUES:
            raise BadRequest(f"{name}: at most {MAX_TOKEN_VALUES} values in one search", name)
    for name in ("_lastUpdated", "date"):
        if name in criteria:
            date_bounds(criteria[name], name)  # refuse a malformed date now, naming the parameter
    count = _count(results.get("_count"))
    sort = results.get("_sort", "_lastUpdated")
    if sort not in SORTS:
        raise BadRequest(f"_sort={sort!r}: {resource_type} is sorted by _lastUpdated or -_lastUpdated only", "_sort")
    summary = results.get("_summary", "false")
    if summary not in ("false", "count"):
        raise BadRequest(f"_summary={summary!r}: only _summary=count is served", "_summary")
    total = results.get("_total", "none")
    if total not in ("none", "estimate", "accurate"):
        raise BadRequest(f"_total={total!r}: use none, estimate or accurate", "_total")
    pretty = results.get("_pretty", "false")
    if pretty not in ("true", "false"):
        raise BadRequest(f"_pretty={pretty!r}: use true or false", "_pretty")
    page = results.get("_page")
    only_count = summary == "count" or count == 0  # _count=0 asks for no entries: the total alone
    return SearchRequest(
        resource_type=resource_type,
        criteria={name: tuple(values) for name, values in criteria.items()},
        count=count,
        descending=SORTS[sort],
        cursor=Cursor.parse(page) if page is not None else None,
        total=only_count or total == "accurate",
        summary_count=only_count,
        ignored=tuple(ignored),
        pretty=pretty == "true",
        elements=_elements(results.get("_elements")),
    )


_DIGITS = re.compile(r"[0-9]{1,6}")


def _count(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_COUNT
    if not _DIGITS.fullmatch(raw):  # ASCII digits only: str.isdigit() also takes "²", which int() refuses
        raise BadRequest(f"_count={raw!r}: use a whole number of entries per page (0 to {MAX_COUNT})", "_count")
    return min(int(raw), MAX_COUNT)


def _elements(raw: str | None) -> tuple[str, ...]:
    if raw is None:
        return ()
    names = tuple(dict.fromkeys(name.strip() for name in raw.split(",")))
    if len(names) > 64 or not all(_ELEMENT.fullmatch(name) for name in names):
        raise BadRequest(
            "_elements: give top-level element names, comma-separated (e.g. status,provision)", "_elements"
        )
    return names
