"""Matching peers with clients on what they have in common — never on diagnosis. Pure: no I/O.

Inputs are a client's matching preferences (only what the client agreed to share for matching) and peer
profiles; there is no field for any clinical fact, so none can influence a suggestion. The score is a sum
of visible parts, each with its reason in words:

| part | points |
|---|---|
| each shared interest (up to 3) | 3 |
| a shared language (when the client named languages) | 4 |
| the peer is of a gender the client prefers | 3 |
| the peer's age band is one the client prefers | 2 |
| the client fits the peer's own preferences (age range, gender) | 2 |
| same neighbourhood | 3 |
| offers the support the stage calls for (on-ward meetings before discharge, community visits after) | 1 |
| free capacity | 2 x free places / cap |

Hard rules, before any score: the peer is active (not paused, not inactive), below their caseload cap, not
excluded by the client, and not already re-matched away from this episode (at either side's request: that is
how a peer excludes a client). Ties break on fewer clients, then the peer's id, so the order never depends
on input order.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property

from service.domain.vocabulary import COMMUNITY_SUPPORT, ON_WARD_SUPPORT, PeerStatus, SupportKind

INTEREST_POINTS = 3.0
MAX_SCORED_INTERESTS = 3
LANGUAGE_POINTS = 4.0
GENDER_POINTS = 3.0
AGE_POINTS = 2.0
PEER_PREFERENCE_POINTS = 2.0
NEIGHBOURHOOD_POINTS = 3.0
STAGE_POINTS = 1.0
CAPACITY_POINTS = 2.0

AGE_BANDS: dict[str, tuple[int, int]] = {
    "18-24": (18, 24),
    "25-34": (25, 34),
    "35-44": (35, 44),
    "45-54": (45, 54),
    "55-64": (55, 64),
    "65-plus": (65, 120),
}


# Names for the languages most spoken in Ontario's programs; other BCP-47 tags are shown as written.
LANGUAGE_NAMES = {
    "ar": "Arabic", "cmn": "Mandarin", "cr": "Cree", "de": "German", "el": "Greek", "en": "English",
    "es": "Spanish", "fa": "Persian", "fr": "French", "hi": "Hindi", "it": "Italian", "iu": "Inuktitut",
    "ko": "Korean", "oj": "Ojibwe", "pa": "Punjabi", "pl": "Polish", "pt": "Portuguese", "ru": "Russian",
    "so": "Somali", "ta": "Tamil", "tl": "Tagalog", "uk": "Ukrainian", "ur": "Urdu", "vi": "Vietnamese",
    "yue": "Cantonese", "zh": "Chinese",
}  # fmt: skip


def language_name(tag: str) -> str:
    return LANGUAGE_NAMES.get(tag.split("-")[0].lower(), tag)


def normalise(word: str) -> str:
    return " ".join(word.casefold().split())


@dataclass(frozen=True)
class PeerProfile:
    peer_id: str
    name: str
    status: PeerStatus = PeerStatus.ACTIVE
    gender: str | None = None  # administrative-gender
    age_band: str | None = None
    languages: frozenset[str] = frozenset()  # BCP-47, e.g. "pt", "en"
    interests: tuple[str, ...] = ()  # as the peer wrote them, e.g. "Old movies"
    neighbourhood: str | None = None
    weekly_hours: float | None = None
    caseload_cap: int = 3
    support_kinds: frozenset[SupportKind] = frozenset()
    client_min_age: int | None = None
    client_max_age: int | None = None
    client_genders: frozenset[str] = frozenset()

    @cached_property
    def interest_keys(self) -> tuple[tuple[str, str], ...]:
        """(normalised, as written) for each interest: normalised once per profile, not per comparison."""
        return tuple((normalise(i), i) for i in self.interests)

    @cached_property
    def neighbourhood_key(self) -> str | None:
        return normalise(self.neighbourhood) if self.neighbourhood else None


@dataclass(frozen=True)
class ClientPreferences:
    """Only what the client shared for matching."""

    client_id: str
    peer_genders: frozenset[str] = frozenset()
    languages: frozenset[str] = frozenset()
    interests: tuple[str, ...] = ()
    own_age_band: str | None = None
    own_gender: str | None = None
    peer_age_bands: frozenset[str] = frozenset()
    neighbourhood: str | None = None
    excluded_peers: frozenset[str] = frozenset()

    @cached_property
    def interest_keys(self) -> frozenset[str]:
        return frozenset(normalise(i) for i in self.interests)

    @cached_property
    def neighbourhood_key(self) -> str | None:
        return normalise(self.neighbourhood) if self.neighbourhood else None


@dataclass(frozen=True)
class Candidate:
    profile: PeerProfile
    caseload: int  # clients assigned now


@dataclass(frozen=True)
class Suggestion:
    peer_id: str
    name: str
    score: float
    reasons: tuple[str, ...]
    caseload: int
    caseload_cap: int

    @property
    def free_places(self) -> int:
        return max(0, self.caseload_cap - self.caseload)


@dataclass(frozen=True)
class Exclusion:
    peer_id: str
    reason: str


@dataclass(frozen=True)
class Ranking:
    suggestions: tuple[Suggestion, ...]
    excluded: tuple[Exclusion, ...] = field(default_factory=tuple)


def exclusion(prefs: ClientPreferences, candidate: Candidate, tried: frozenset[str]) -> str | None:
    """Why a peer cannot be suggested at all (a hard rule), or None."""
    peer = candidate.profile
    if peer.status is not PeerStatus.ACTIVE:
        return f"{peer.status.value}"
    if candidate.caseload >= peer.caseload_cap:
        return f"at their caseload cap ({candidate.caseload} of {peer.caseload_cap})"
    if peer.peer_id in prefs.excluded_peers:
        return "the client asked not to be matched with this peer"
    if peer.peer_id in tried:
        # Either side asked for a re-match: the client's or the peer's exclusion of the other.
        return "already re-matched away from this client"
    return None


def _overlaps(band: str | None, low: int | None, high: int | None) -> bool | None:
    if band not in AGE_BANDS:
        return None
    band_low, band_high = AGE_BANDS[band]
    return band_low <= (high if high is not None else 200) and band_high >= (low if low is not None else 0)


def _words(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def score(prefs: ClientPreferences, candidate: Candidate, *, on_ward: bool) -> Suggestion:
    """The transparent score of one eligible peer for one client, with its reasons in words."""
    peer = candidate.profile
    total = 0.0
    reasons: list[str] = []

    client_interests = prefs.interest_keys
    shared = [written for key, written in peer.interest_keys if key in client_interests]
    if shared:
        total += INTEREST_POINTS * min(len(shared), MAX_SCORED_INTERESTS)
        reasons.append(f"both enjoy {_words([s.lower() for s in shared])}")

    if prefs.languages:
        common = sorted(prefs.languages & peer.languages)
        if common:
            total += LANGUAGE_POINTS
            reasons.append(f"speaks {_words([language_name(c) for c in common])}")
        else:
            reasons.append("no language in common")

    if prefs.peer_genders:
        if peer.gender in prefs.peer_genders:
            total += GENDER_POINTS
            reasons.append("the gender the client prefers")
        else:
            reasons.append("not the gender the client prefers")

    if prefs.peer_age_bands:
        if peer.age_band in prefs.peer_age_bands:
            total += AGE_POINTS
            reasons.append("in the age range the client prefers")
        else:
            reasons.append("outside the age range the client prefers")

    if peer.client_min_age is not None or peer.client_max_age is not None or peer.client_genders:
        age_fits = _overlaps(prefs.own_age_band, peer.client_min_age, peer.client_max_age)
        gender_fits = (
            None
            if not peer.client_genders
            else (None if prefs.own_gender is None else prefs.own_gender in peer.client_genders)
        )
        checks = [fit for fit in (age_fits, gender_fits) if fit is not None]
        if checks and all(checks):
            total += PEER_PREFERENCE_POINTS
            reasons.append("the client fits the peer's own preferences")
        elif checks:
            reasons.append("the client is outside the peer's own preferences")

    if prefs.neighbourhood_key is not None and prefs.neighbourhood_key == peer.neighbourhood_key:
        total += NEIGHBOURHOOD_POINTS
        reasons.append(f"both in {peer.neighbourhood}")

    stage = ON_WARD_SUPPORT if on_ward else COMMUNITY_SUPPORT
    if peer.support_kinds & stage:
        total += STAGE_POINTS
        reasons.append("offers on-ward meetings" if on_ward else "offers community visits")

    free = max(0, peer.caseload_cap - candidate.caseload)
    total += CAPACITY_POINTS * free / peer.caseload_cap if peer.caseload_cap else 0.0
    reasons.append(f"{free} of {peer.caseload_cap} places free")
    return Suggestion(
        peer_id=peer.peer_id,
        name=peer.name,
        score=round(total, 3),
        reasons=tuple(reasons),
        caseload=candidate.caseload,
        caseload_cap=peer.caseload_cap,
    )


def rank(
    prefs: ClientPreferences,
    candidates: Iterable[Candidate],
    *,
    on_ward: bool,
    tried: frozenset[str] = frozenset(),
    limit: int = 10,
) -> Ranking:
    """Eligible peers, best first (score, then fewer clients, then id); the excluded ones with why."""
    suggestions: list[Suggestion] = []
    excluded: list[Exclusion] = []
    for candidate in candidates:
        why = exclusion(prefs, candidate, tried)
        if why is None:
            suggestions.append(score(prefs, candidate, on_ward=on_ward))
        else:
            excluded.append(Exclusion(candidate.profile.peer_id, why))
    suggestions.sort(key=lambda s: (-s.score, s.caseload, s.peer_id))
    excluded.sort(key=lambda e: e.peer_id)
    return Ranking(tuple(suggestions[:limit]), tuple(excluded))
