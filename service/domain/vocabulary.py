"""The program's words, read from Peerway's published CodeSystems (fhir_profiles/data), never re-typed here.

A few codes are named by the rules (an episode is on the ward or in the community; a contact on the ward...):
`term` looks each one up in its CodeSystem when this module is imported, so a renamed or retired code fails at
start-up rather than quietly matching nothing. Enums that code reads member by member are checked the same way
(`from_code_system`): their members must be exactly the CodeSystem's codes.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from typing import TypeVar

import fhir_profiles

E = TypeVar("E", bound=type[StrEnum])


def term(system: str, code: str) -> str:
    """`code`, after checking that `system` (one of ours) defines it."""
    if code not in fhir_profiles.codes(system):
        raise LookupError(f"{system} has no code {code!r}")
    return code


def selectable(system: str) -> frozenset[str]:
    """The codes of `system` that a record may carry (not the abstract groupings marked notSelectable)."""
    codes = fhir_profiles.codes(system)
    return frozenset(c for c in codes if fhir_profiles.concept_property(system, c, "notSelectable") is not True)


def from_code_system(system: str) -> Callable[[E], E]:
    """Class decorator: the enum's values must be exactly the selectable codes of `system`."""

    def check(enum: E) -> E:
        values = {member.value for member in enum}
        published = set(selectable(system))
        if values != published:
            raise LookupError(f"{enum.__name__} has {sorted(values)}; {system} has {sorted(published)}")
        return enum

    return check


# Episodes: where the client is, and how a peer's period with them ends.
ON_WARD = term(fhir_profiles.EPISODE_STATE_SYSTEM, "on-ward")
IN_COMMUNITY = term(fhir_profiles.EPISODE_STATE_SYSTEM, "in-community")
EPISODE_STATES = fhir_profiles.codes(fhir_profiles.EPISODE_STATE_SYSTEM)

REPLACED = term(fhir_profiles.ASSIGNMENT_END_SYSTEM, "replaced")
REMATCHED = term(fhir_profiles.ASSIGNMENT_END_SYSTEM, "rematch")
EPISODE_ENDED = term(fhir_profiles.ASSIGNMENT_END_SYSTEM, "episode-ended")
NEW_STAY = term(fhir_profiles.ASSIGNMENT_END_SYSTEM, "new-stay")

# Set by a hospital's cancelled admission (HL7 v2 A11), never chosen by a coordinator.
ADMISSION_CANCELLED = term(fhir_profiles.EPISODE_END_REASON_SYSTEM, "admission-cancelled")
END_REASONS = fhir_profiles.codes(fhir_profiles.EPISODE_END_REASON_SYSTEM) - {ADMISSION_CANCELLED}
REMATCH_REASONS = fhir_profiles.codes(fhir_profiles.REMATCH_REASON_SYSTEM)
REQUESTERS = frozenset({"client", "peer", "coordinator"})  # who asks for a re-match (Assignment.requested_by)


@from_code_system(fhir_profiles.PEER_CONTACT_KIND_SYSTEM)
class ContactKind(StrEnum):
    """What kind of meeting a peer contact was (peer-contact-kind)."""

    ON_WARD_ONE_TO_ONE = "on-ward-one-to-one"
    ON_WARD_GROUP = "on-ward-group"
    COMMUNITY_VISIT = "community-visit"
    PHONE_VIDEO = "phone-video"
    ACCOMPANIED_APPOINTMENT = "accompanied-appointment"


ON_WARD_CONTACTS = frozenset({ContactKind.ON_WARD_ONE_TO_ONE, ContactKind.ON_WARD_GROUP})


@from_code_system(fhir_profiles.PEER_STATUS_SYSTEM)
class PeerStatus(StrEnum):
    """Whether a peer takes new clients (peer-status)."""

    ACTIVE = "active"
    PAUSED = "paused"
    INACTIVE = "inactive"


@from_code_system(fhir_profiles.SUPPORT_KIND_SYSTEM)
class SupportKind(StrEnum):
    """What support a peer offers (support-kind)."""

    ON_WARD_GROUPS = "on-ward-groups"
    ON_WARD_ONE_TO_ONE = "on-ward-one-to-one"
    COMMUNITY_VISITS = "community-visits"
    ACCOMPANYING_APPOINTMENTS = "accompanying-appointments"
    PHONE_SUPPORT = "phone-support"


ON_WARD_SUPPORT = frozenset({SupportKind.ON_WARD_GROUPS, SupportKind.ON_WARD_ONE_TO_ONE})
COMMUNITY_SUPPORT = frozenset({SupportKind.COMMUNITY_VISITS, SupportKind.ACCOMPANYING_APPOINTMENTS})
