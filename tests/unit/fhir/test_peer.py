"""A peer profile survives the trip through FHIR Practitioner + PractitionerRole unchanged, and the
resources are valid R4 conforming to our peer-supporter-role profile."""

from __future__ import annotations

from fhir.resources.R4B.practitioner import Practitioner
from fhir.resources.R4B.practitionerrole import PractitionerRole
from hypothesis import given
from hypothesis import strategies as st

import fhir_profiles
from service.domain.matching import AGE_BANDS, PeerProfile
from service.domain.vocabulary import PeerStatus, SupportKind
from service.fhir.peer import practitioner, practitioner_role, profile_from

WORDS = st.text(alphabet=st.characters(categories=["L", "Zs"]), min_size=1, max_size=20).map(str.strip).filter(bool)
profiles = st.builds(
    PeerProfile,
    peer_id=st.from_regex(r"[a-z0-9\-]{1,40}", fullmatch=True),
    name=WORDS,
    status=st.sampled_from(PeerStatus),
    gender=st.none() | st.sampled_from(["male", "female", "other", "unknown"]),
    age_band=st.none() | st.sampled_from(sorted(AGE_BANDS)),
    languages=st.frozensets(st.sampled_from(["en", "fr", "pt", "pa", "zh-hk"]), max_size=3),
    interests=st.lists(WORDS, max_size=4, unique=True).map(tuple),
    neighbourhood=st.none() | WORDS,
    weekly_hours=st.none() | st.sampled_from([0.5, 2.0, 7.25, 40.0]),
    caseload_cap=st.integers(1, 20),
    support_kinds=st.frozensets(st.sampled_from(SupportKind)),
    client_min_age=st.none() | st.integers(18, 40),
    client_max_age=st.none() | st.integers(41, 90),
    client_genders=st.frozensets(st.sampled_from(["male", "female", "other"])),
)


@given(profile=profiles)
def test_profiles_round_trip_through_fhir(profile: PeerProfile) -> None:
    stored_practitioner = practitioner(profile, 3)
    stored_role = practitioner_role(profile, 3)
    assert profile_from(stored_practitioner, stored_role) == profile


@given(profile=profiles)
def test_the_resources_are_valid_and_conform(profile: PeerProfile) -> None:
    Practitioner.model_validate(practitioner(profile, 1))
    role = practitioner_role(profile, 1)
    PractitionerRole.model_validate(role)
    assert fhir_profiles.check_conformance(role, fhir_profiles.PEER_SUPPORTER_ROLE_PROFILE) == []
