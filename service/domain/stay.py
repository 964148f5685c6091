"""What the hospital says about a client's stay, as the domain reads it: one hospital event (Da Vinci or a
subscription), the Encounter and Patient snapshots it carried, and a peer contact as a peer's app reported it.

Frozen dataclasses; FHIR JSON appears only as the verbatim snapshot text kept for later reads (the summary).
service/fhir/ builds these from the wire; service/domain/episode.py applies them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from service.domain.vocabulary import ContactKind


class HospitalEventKind(StrEnum):
    """Da Vinci Unsolicited Notifications event codes (notification-event CodeSystem) that we act on."""

    ADMIT = "notification-admit"
    TRANSFER = "notification-transfer"
    DISCHARGE = "notification-discharge"


@dataclass(frozen=True)
class PatientSnapshot:
    ehr_id: str
    resource_json: str
    complete: bool = True  # False: only the reference was known (the resource is fetched later)


@dataclass(frozen=True)
class EncounterSnapshot:
    ehr_id: str
    status: str
    start: datetime | None
    end: datetime | None
    discharge_disposition: str | None
    readmission: bool
    resource_json: str
    updated_at: datetime | None = None  # Encounter.meta.lastUpdated: orders snapshots of one stay
    expected_end: datetime | None = None  # an expected discharge date the EHR named (extension, R5 plannedEndDate)


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


# Every code of the Da Vinci notification-event CodeSystem (HL7/davinci-alerts
# input/resources/CodeSystem-notification-event.json, version 1.0.0). Only admit, transfer and discharge change
# an episode; the others, and codes outside this list, are acknowledged and recorded without effect.
DAVINCI_EVENT_CODES: frozenset[str] = frozenset(
    {
        "notification-refill-request",
        "notification-progress-update",
        "notification-appointment-reminder",
        "notification-phone-consult",
        "notification-summary-report",
        "notification-admit",
        "notification-discharge",
        "notification-transfer",
        "notification-referral",
        "notification-tx-change",
        "notification-lab-report",
        "notification-tx-issue",
        "notification-ordered-device",
        "notification-prior-auth-notice",
        "notification-new-condition",
        "notification-care-team-change",
        "notification-coverage-change",
        "notification-social-determinants-change",
        "notification-public-health",
        "notification-outpatient-visit",
        "notification-vitals",
        "notification-pharmacy",
        "notification-workers-comp",
    }
)


@dataclass(frozen=True)
class Stay:
    """What one hospital event says about one stay: the Encounter (and its Patient) as the EHR described it."""

    encounter: EncounterSnapshot
    patient: PatientSnapshot
    kind: HospitalEventKind | None  # from the Encounter's status; None: recorded without effect
