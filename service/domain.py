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


# --- Hospital events from every channel (issue 4) -------------------------------------------------------------

# Every code of the Da Vinci notification-event CodeSystem (HL7/davinci-alerts
# input/resources/CodeSystem-notification-event.json, version 1.0.0). Only admit, transfer and discharge change
# an episode; the others are acknowledged and recorded without effect. A code outside this list is refused.
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


class NotificationType(StrEnum):
    """What a subscription notification is (R5 / backport SubscriptionStatus.type)."""

    HANDSHAKE = "handshake"
    HEARTBEAT = "heartbeat"
    EVENT_NOTIFICATION = "event-notification"
    QUERY_STATUS = "query-status"
    QUERY_EVENT = "query-event"


class NotificationForm(StrEnum):
    """The dialect a notification arrived in."""

    R4_BACKPORT = "r4-backport"  # Bundle.type history, first entry a Parameters (backport-subscription-status-r4)
    R4B = "r4b"  # Bundle.type history, first entry an R4B SubscriptionStatus
    R5 = "r5"  # Bundle.type subscription-notification, first entry an R5 SubscriptionStatus


@dataclass(frozen=True)
class Stay:
    """What one hospital event says about one stay: the Encounter (and its Patient) as the EHR described it."""

    encounter: EncounterSnapshot
    patient: PatientSnapshot
    kind: HospitalEventKind | None  # from the Encounter's status; None: recorded without effect


@dataclass(frozen=True)
class NotifiedEvent:
    """One event of a subscription notification: its number, and what the payload carried about it.

    full-resource: `stay` is set. id-only: `focus` ("Encounter/<id>") is set and the stay is fetched later.
    empty: neither; what changed is searched for.
    """

    number: int
    occurred_at: datetime | None
    focus: str | None
    stay: Stay | None
    other_focus: bool = False  # the focus is not an Encounter: acknowledged without effect


@dataclass(frozen=True)
class SubscriptionNotification:
    """A subscription notification Bundle in any of the three forms, reduced to what intake needs."""

    form: NotificationForm
    subscription: str  # "Subscription/<id>" on the sender's server
    topic: str | None
    status: str | None
    type: NotificationType
    events_since_start: int | None
    events: tuple[NotifiedEvent, ...]
    sent_at: datetime | None


@dataclass(frozen=True)
class SubscriptionReport:
    """The EHR's view of a Subscription ($status, or a read when $status is not offered)."""

    subscription: str
    status: str | None
    events_since_start: int | None
    heartbeat_seconds: int | None
    topic: str | None
    error: str | None
    source: str  # "$status" or "read"
