"""Domain -> wire: the client's program CareTeam, as Peerway writes it to the EHR.

One CareTeam per episode (our stable id `peerway-<episode id>` and identifier), its subject the EHR's Patient,
managed by the program's Organization, with every peer who has been assigned: role peer-supporter from our
participant-role CodeSystem and the period of the assignment (an end once they are no longer assigned).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import fhir_profiles
from service.fhir.build import fhir_instant

CARE_TEAM_IDENTIFIER_SYSTEM = f"{fhir_profiles.CANONICAL}/sid/program-care-team"
PEER_SUPPORTER_ROLE = "peer-supporter"


@dataclass(frozen=True)
class CareTeamMemberView:
    practitioner_reference: str
    peer_name: str
    started_at: datetime
    ended_at: datetime | None


@dataclass(frozen=True)
class CareTeamView:
    episode_id: str
    subject_reference: str  # the EHR's Patient
    hospital_stay_reference: str  # the EHR's Encounter the episode began with
    organization_reference: str
    organization_name: str
    members: Sequence[CareTeamMemberView]


def careteam_id(episode_id: str) -> str:
    return f"peerway-{episode_id}"


def careteam_identifier(episode_id: str) -> str:
    """system|value, as a conditional create or a search names it."""
    return f"{CARE_TEAM_IDENTIFIER_SYSTEM}|{episode_id}"


def _period(start: datetime, end: datetime | None) -> dict[str, str]:
    period = {"start": fhir_instant(start)}
    if end is not None:
        period["end"] = fhir_instant(end)
    return period


def program_careteam(view: CareTeamView) -> dict[str, Any]:
    """An R4 CareTeam naming the client's peer supporters, past and present."""
    role_system = fhir_profiles.PARTICIPANT_ROLE_SYSTEM
    role = {
        "coding": [
            {
                "system": role_system,
                "code": PEER_SUPPORTER_ROLE,
                "display": fhir_profiles.display(role_system, PEER_SUPPORTER_ROLE),
            }
        ]
    }
    careteam: dict[str, Any] = {
        "resourceType": "CareTeam",
        "id": careteam_id(view.episode_id),
        "meta": {"source": fhir_profiles.CANONICAL},
        "identifier": [{"system": CARE_TEAM_IDENTIFIER_SYSTEM, "value": view.episode_id}],
        "status": "active",
        "name": view.organization_name,
        "subject": {"reference": view.subject_reference},
        "encounter": {"reference": view.hospital_stay_reference},
        "participant": [
            {
                "role": [role],
                "member": {"reference": m.practitioner_reference, "display": m.peer_name},
                "period": _period(m.started_at, m.ended_at),
            }
            for m in view.members
        ],
        "managingOrganization": [{"reference": view.organization_reference, "display": view.organization_name}],
    }
    if view.members:
        careteam["period"] = {"start": fhir_instant(min(m.started_at for m in view.members))}
    return careteam
