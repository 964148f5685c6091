"""Domain words shared by the layers: what a hospital event, a peer contact and a snapshot are.

Frozen dataclasses; FHIR JSON appears here only as the verbatim snapshot text we keep for later reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class HospitalEventKind(StrEnum):
    """Da Vinci Unsolicited Notifications event codes (notification-event CodeSystem) that we act on."""

    ADMIT = "notification-admit"
    TRANSFER = "notification-transfer"
    DISCHARGE = "notification-discharge"


class EpisodeState(StrEnum):
    ON_WARD = "on-ward"
    IN_COMMUNITY = "in-community"


class ContactKind(StrEnum):
    """Codes of our peer-contact-kind CodeSystem (fhir_profiles)."""

    ON_WARD_ONE_TO_ONE = "on-ward-one-to-one"
    ON_WARD_GROUP = "on-ward-group"
    COMMUNITY_VISIT = "community-visit"
    PHONE_VIDEO = "phone-video"
    ACCOMPANIED_APPOINTMENT = "accompanied-appointment"


@dataclass(frozen=True)
class PatientSnapshot:
    ehr_id: str
    resource_json: str


@dataclass(frozen=True)
class EncounterSnapshot:
    ehr_id: str
    status: str
    start: datetime | None
    end: datetime | None
    discharge_disposition: str | None
    readmission: bool
    resource_json: str


@dataclass(frozen=True)
class HospitalEvent:
    """One admit/transfer/discharge (or other) notification, as the EHR sent it."""

    message_id: str
    event_code: str
    kind: HospitalEventKind | None  # None: a notification we acknowledge without effect
    sent_at: datetime | None
    encounter: EncounterSnapshot
    patient: PatientSnapshot


@dataclass(frozen=True)
class ContactReport:
    """A peer contact as the peer's app reported it (a PeerContact Encounter)."""

    client_id: str
    kind: ContactKind
    started_at: datetime
    minutes: int
    app_identifier: str | None  # "system|value" the app gave, for idempotent re-posts
