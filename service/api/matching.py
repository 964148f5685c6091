"""Matching: peer profiles and status, clients' preferences, suggestions, confirm / re-match / end, caseloads.

A site's coordinator reaches the site's episodes and the peers enabled at the site (a peer organization's
coordinator keeps its own peers under /api/org: service/api/organizations.py).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import AfterValidator, BaseModel, Field, model_validator

from service.api.deps import Coordinator, Peer, SessionsDep
from service.api.fhir_rest import json_only
from service.api.peers import EpisodeOut, episode_out
from service.api.responses import FhirResponse
from service.api.text import Input
from service.app import matching as use
from service.domain.matching import AGE_BANDS, ClientPreferences, PeerProfile
from service.domain.vocabulary import PeerStatus, SupportKind

router = APIRouter(prefix="/api", tags=["matching"])
fhir_router = APIRouter(prefix="/fhir", tags=["matching"], dependencies=[Depends(json_only)])

Gender = Literal["male", "female", "other", "unknown"]
AgeBand = Literal["18-24", "25-34", "35-44", "45-54", "55-64", "65-plus"]
Language = Annotated[str, Field(pattern=r"^[a-zA-Z]{2,3}(-[a-zA-Z0-9]{2,8})*$", description="BCP-47, e.g. pt, en-CA")]


def _a_word(value: str) -> str:
    """An interest as kept (stripped as Python strips): one of only spaces was stored as "" and then failed the
    answer's own model, a 500 after the write."""
    kept = value.strip()
    if not kept:
        raise ValueError("an interest needs a word, not only spaces")
    return kept


Interest = Annotated[str, Field(min_length=1, max_length=60), AfterValidator(_a_word)]
assert set(AGE_BANDS) == set(AgeBand.__args__)  # type: ignore[attr-defined]


class ProfileIn(Input):
    name: str | None = Field(default=None, max_length=200)
    status: PeerStatus = PeerStatus.ACTIVE
    gender: Gender | None = None
    age_band: AgeBand | None = None
    languages: list[Language] = Field(default_factory=list, max_length=10)
    interests: list[Interest] = Field(default_factory=list, max_length=20)
    neighbourhood: str | None = Field(default=None, max_length=100)
    weekly_hours: float | None = Field(default=None, ge=0, le=80)
    caseload_cap: int = Field(default=3, ge=1, le=50)
    support_kinds: list[SupportKind] = Field(default_factory=list)
    client_min_age: int | None = Field(default=None, ge=16, le=120)
    client_max_age: int | None = Field(default=None, ge=16, le=120)
    client_genders: list[Gender] = Field(default_factory=list)

    @model_validator(mode="after")
    def _ages_in_order(self) -> ProfileIn:
        low, high = self.client_min_age, self.client_max_age
        if low is not None and high is not None and low > high:
            raise ValueError("client_min_age is above client_max_age")
        return self


class ProfileOut(ProfileIn):
    peer_id: str
    version: int
    practitioner: str
    practitioner_role: str


def profile_from(peer_id: str, body: ProfileIn) -> PeerProfile:
    return PeerProfile(
        peer_id=peer_id,
        name=(body.name or "").strip(),
        status=body.status,
        gender=body.gender,
        age_band=body.age_band,
        languages=frozenset(lang.lower() for lang in body.languages),
        interests=tuple(dict.fromkeys(i.strip() for i in body.interests)),
        neighbourhood=body.neighbourhood,
        weekly_hours=body.weekly_hours,
        caseload_cap=body.caseload_cap,
        support_kinds=frozenset(body.support_kinds),
        client_min_age=body.client_min_age,
        client_max_age=body.client_max_age,
        client_genders=frozenset(body.client_genders),
    )


def profile_out(profile: PeerProfile, version: int) -> ProfileOut:
    return ProfileOut(
        peer_id=profile.peer_id,
        version=version,
        practitioner=f"Practitioner/{profile.peer_id}",
        practitioner_role=f"PractitionerRole/{profile.peer_id}",
        name=profile.name,
        status=profile.status,
        gender=profile.gender,
        age_band=profile.age_band,
        languages=sorted(profile.languages),
        interests=list(profile.interests),
        neighbourhood=profile.neighbourhood,
        weekly_hours=profile.weekly_hours,
        caseload_cap=profile.caseload_cap,
        support_kinds=sorted(profile.support_kinds),
        client_min_age=profile.client_min_age,
        client_max_age=profile.client_max_age,
        client_genders=sorted(profile.client_genders),
    )


@router.put("/peers/{peer_id}/profile", summary="Set a peer supporter's profile (stored as FHIR)")
async def put_profile(peer_id: str, body: ProfileIn, caller: Coordinator, sessions: SessionsDep) -> ProfileOut:
    profile, version = await use.update_profile(sessions, profile_from(peer_id, body), site=caller.site)
    return profile_out(profile, version)


@router.get("/peers/{peer_id}/profile", summary="A peer supporter's profile")
async def get_profile(peer_id: str, caller: Coordinator, sessions: SessionsDep) -> ProfileOut:
    stored = await use.read_profile(sessions, peer_id, site=caller.site)
    return profile_out(stored.profile, stored.version)


@fhir_router.get("/Practitioner/{peer_id}", response_class=FhirResponse, summary="A peer supporter as FHIR")
async def get_practitioner(peer_id: str, caller: Coordinator, sessions: SessionsDep) -> FhirResponse:
    return FhirResponse((await use.read_profile(sessions, peer_id, site=caller.site)).practitioner)


@fhir_router.get(
    "/PractitionerRole/{peer_id}", response_class=FhirResponse, summary="A peer supporter's role in the program"
)
async def get_practitioner_role(peer_id: str, caller: Coordinator, sessions: SessionsDep) -> FhirResponse:
    return FhirResponse((await use.read_profile(sessions, peer_id, site=caller.site)).role)


class StatusIn(Input):
    status: PeerStatus


class OwnStatusIn(Input):
    status: Literal["active", "paused"] = Field(description="a peer can pause themselves and come back")


@router.put("/peers/{peer_id}/status", summary="Pause, resume or retire a peer supporter")
async def put_status(peer_id: str, body: StatusIn, caller: Coordinator, sessions: SessionsDep) -> StatusIn:
    return StatusIn(status=(await use.set_status(sessions, peer_id, body.status, site=caller.site)).status)


@router.put("/me/status", summary="A peer pauses (or resumes) their own availability")
async def put_own_status(body: OwnStatusIn, caller: Peer, sessions: SessionsDep) -> StatusIn:
    return StatusIn(status=(await use.set_status(sessions, caller.subject, PeerStatus(body.status))).status)


class PreferencesIn(Input):
    """Only what the client agreed to share for matching."""

    peer_genders: list[Gender] = Field(default_factory=list)
    languages: list[Language] = Field(default_factory=list, max_length=10)
    interests: list[Interest] = Field(default_factory=list, max_length=20)
    own_age_band: AgeBand | None = None
    own_gender: Gender | None = None
    peer_age_bands: list[AgeBand] = Field(default_factory=list)
    neighbourhood: str | None = Field(default=None, max_length=100)
    excluded_peers: list[str] = Field(default_factory=list, max_length=50)


def _preferences_out(p: ClientPreferences) -> PreferencesIn:
    return PreferencesIn(
        peer_genders=sorted(p.peer_genders),
        languages=sorted(p.languages),
        interests=list(p.interests),
        own_age_band=p.own_age_band,
        own_gender=p.own_gender,
        peer_age_bands=sorted(p.peer_age_bands),
        neighbourhood=p.neighbourhood,
        excluded_peers=sorted(p.excluded_peers),
    )


@router.put("/episodes/{episode_id}/preferences", summary="What the client shared for matching")
async def put_preferences(
    episode_id: str, body: PreferencesIn, caller: Coordinator, sessions: SessionsDep
) -> PreferencesIn:
    preferences = ClientPreferences(
        client_id="",
        peer_genders=frozenset(body.peer_genders),
        languages=frozenset(lang.lower() for lang in body.languages),
        interests=tuple(dict.fromkeys(i.strip() for i in body.interests)),
        own_age_band=body.own_age_band,
        own_gender=body.own_gender,
        peer_age_bands=frozenset(body.peer_age_bands),
        neighbourhood=body.neighbourhood,
        excluded_peers=frozenset(body.excluded_peers),
    )
    return _preferences_out(await use.set_preferences(sessions, caller.site, episode_id, preferences))


@router.get("/episodes/{episode_id}/preferences", summary="What the client shared for matching")
async def get_preferences(episode_id: str, caller: Coordinator, sessions: SessionsDep) -> PreferencesIn:
    return _preferences_out(await use.read_preferences(sessions, caller.site, episode_id))


class SuggestionOut(BaseModel):
    peer_id: str
    name: str
    score: float
    reasons: list[str]
    explanation: str
    caseload: int
    caseload_cap: int
    free_places: int


class ExclusionOut(BaseModel):
    peer_id: str
    reason: str


class SuggestionsOut(BaseModel):
    episode_id: str
    suggestions: list[SuggestionOut]
    excluded: list[ExclusionOut]


@router.get("/episodes/{episode_id}/suggestions", summary="Peers ranked for this client, with reasons")
async def suggestions(
    episode_id: str,
    caller: Coordinator,
    sessions: SessionsDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
) -> SuggestionsOut:
    ranking = await use.suggest(sessions, caller.site, episode_id, limit)
    return SuggestionsOut(
        episode_id=episode_id,
        suggestions=[
            SuggestionOut(
                peer_id=s.peer_id,
                name=s.name,
                score=s.score,
                reasons=list(s.reasons),
                explanation="; ".join(s.reasons),
                caseload=s.caseload,
                caseload_cap=s.caseload_cap,
                free_places=s.free_places,
            )
            for s in ranking.suggestions
        ],
        excluded=[ExclusionOut(peer_id=e.peer_id, reason=e.reason) for e in ranking.excluded],
    )


class ConfirmIn(Input):
    peer_id: str = Field(min_length=1, max_length=64)


@router.post("/episodes/{episode_id}/confirm", summary="Confirm a suggested peer")
async def confirm(episode_id: str, body: ConfirmIn, caller: Coordinator, sessions: SessionsDep) -> EpisodeOut:
    return episode_out(await use.confirm(sessions, caller.site, episode_id, body.peer_id))


class RematchIn(Input):
    requested_by: Literal["client", "peer", "coordinator"]
    reason: Literal["no-connection", "client-request", "peer-request", "peer-unavailable", "safety", "other"]
    note: str | None = Field(default=None, max_length=1000)


@router.post("/episodes/{episode_id}/rematch", summary="End the pairing so the client can be matched again")
async def rematch(episode_id: str, body: RematchIn, caller: Coordinator, sessions: SessionsDep) -> EpisodeOut:
    return episode_out(await use.rematch(sessions, caller.site, episode_id, body.requested_by, body.reason, body.note))


class PeerRematchIn(Input):
    note: str | None = Field(default=None, max_length=1000)


@router.post("/me/clients/{client_id}/rematch", status_code=204, summary="A peer asks to be re-matched away")
async def rematch_by_peer(client_id: str, body: PeerRematchIn, caller: Peer, sessions: SessionsDep) -> None:
    await use.rematch_by_peer(sessions, caller.subject, client_id, body.note)


class EndIn(Input):
    reason: Literal["completed", "client-withdrew", "no-contact"]
    note: str | None = Field(default=None, max_length=1000)


@router.post("/episodes/{episode_id}/end", status_code=204, summary="End the episode and free the peer's place")
async def end(episode_id: str, body: EndIn, caller: Coordinator, sessions: SessionsDep) -> None:
    await use.end_episode(sessions, caller.site, episode_id, body.reason, body.note)


class HistoryOut(BaseModel):
    peer_id: str
    started_at: datetime
    suggested: bool
    score: float | None
    ended_at: datetime | None
    end_kind: str | None
    end_reason: str | None
    requested_by: str | None
    note: str | None


class EpisodeHistoryOut(BaseModel):
    episode_id: str
    assignments: list[HistoryOut]
    ended_at: datetime | None
    end_reason: str | None


@router.get("/episodes/{episode_id}/history", summary="Every assignment, re-match and ending of the episode")
async def history(episode_id: str, caller: Coordinator, sessions: SessionsDep) -> EpisodeHistoryOut:
    entries, closure = await use.history(sessions, caller.site, episode_id)
    return EpisodeHistoryOut(
        episode_id=episode_id,
        assignments=[HistoryOut(**vars(e)) for e in entries],
        ended_at=closure.ended_at if closure else None,
        end_reason=closure.reason if closure else None,
    )


class ClientLoadOut(BaseModel):
    client_id: str
    episode_id: str
    minutes_last_7_days: int
    below_weekly_minimum: bool


class CaseloadOut(BaseModel):
    peer_id: str
    name: str
    status: str
    caseload_cap: int
    free_places: int = Field(description="the cap less the peer's clients at every site")
    clients: list[ClientLoadOut] = Field(description="this site's clients only")


@router.get("/caseloads", summary="Each peer's clients at this site and contact time against the weekly minimum")
async def caseloads(caller: Coordinator, sessions: SessionsDep) -> list[CaseloadOut]:
    return [
        CaseloadOut(
            peer_id=c.peer_id,
            name=c.name,
            status=c.status,
            caseload_cap=c.caseload_cap,
            free_places=c.free_places,
            clients=[
                ClientLoadOut(
                    client_id=x.client_id,
                    episode_id=x.episode_id,
                    minutes_last_7_days=x.minutes_last_7_days,
                    below_weekly_minimum=x.below_minimum,
                )
                for x in c.clients
            ],
        )
        for c in await use.caseload_view(sessions, caller.site)
    ]
