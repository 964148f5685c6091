"""Wire <-> domain for topic-based subscriptions: notifications in the three forms EHRs send, the Encounters
they carry or point at, our own R4 backport Subscription, and the EHR's report on it.

Forms (all rest-hook, application/fhir+json):
- R4 backport: Bundle.type `history`, first entry a Parameters (backport-subscription-status-r4);
- R4B: Bundle.type `history`, first entry an R4B SubscriptionStatus;
- R5: Bundle.type `subscription-notification`, first entry an R5 SubscriptionStatus (integer64 as JSON strings).

What the EHR answers to our reads (id-only fetches, searches): ehr_answers.py; our own Subscription and the
EHR's report on it: backport.py; the requests themselves: service/ehr/client.py.

Encounter status -> hospital event (documented in the README, "Hospital events"):
- R4 in-progress, onleave; R5 in-progress, on-hold: admit (an unknown stay opens on the ward; a known stay is
  updated, which is what a transfer does);
- R4 finished; R5 discharged, completed, discontinued (the stay ended, even if early): discharge;
- planned, arrived, triaged, cancelled, entered-in-error, unknown: recorded without effect.
R5 Encounters are kept in R4 shape (status, class, period, hospitalization) so every later read stays R4.
"""

from __future__ import annotations

import json
import re
from typing import Any

from fhir.resources.bundle import Bundle as R5Bundle
from fhir.resources.encounter import Encounter as R5Encounter
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.encounter import Encounter
from fhir.resources.R4B.parameters import Parameters
from fhir.resources.R4B.subscriptionstatus import SubscriptionStatus as R4BSubscriptionStatus
from fhir.resources.subscriptionstatus import SubscriptionStatus as R5SubscriptionStatus

from service.domain.stay import EncounterSnapshot, HospitalEventKind, PatientSnapshot, Stay
from service.errors import InvalidResource
from service.fhir.ids import is_fhir_id
from service.fhir.notification import NotificationForm, NotificationType, NotifiedEvent, SubscriptionNotification
from service.fhir.parse import (
    check_id,
    codes_text,
    encounter_snapshot,
    entry_index,
    extension_instant,
    instant,
    original_json,
    resolve,
)
from service.fhir.validation import validated

BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition"
BACKPORT_SUBSCRIPTION = f"{BACKPORT}/backport-subscription"
PAYLOAD_CONTENT = f"{BACKPORT}/backport-payload-content"
HEARTBEAT_PERIOD = f"{BACKPORT}/backport-heartbeat-period"
TIMEOUT = f"{BACKPORT}/backport-timeout"
FILTER_CRITERIA = f"{BACKPORT}/backport-filter-criteria"
SUBSCRIPTION_STATUSES = frozenset({"requested", "active", "error", "off", "entered-in-error"})
MAX_EVENT_NUMBER = 2**62  # integer64 in R5; our columns are 64-bit
_REFERENCE = re.compile(r"(?:^|/)([A-Z][A-Za-z]{1,63})/([A-Za-z0-9\-.]{1,64})(?:/_history/[A-Za-z0-9\-.]{1,64})?$")

ADMIT_STATUSES = frozenset({"in-progress", "onleave", "on-hold"})
DISCHARGE_STATUSES = frozenset({"finished", "discharged", "completed", "discontinued"})
R5_TO_R4_STATUS = {
    "planned": "planned",
    "in-progress": "in-progress",
    "on-hold": "onleave",
    "discharged": "finished",
    "completed": "finished",
    "discontinued": "finished",
    "cancelled": "cancelled",
    "entered-in-error": "entered-in-error",
    "unknown": "unknown",
}


def kind_of(status: str) -> HospitalEventKind | None:
    """The hospital event an Encounter status stands for (see the module docstring)."""
    if status in ADMIT_STATUSES:
        return HospitalEventKind.ADMIT
    if status in DISCHARGE_STATUSES:
        return HospitalEventKind.DISCHARGE
    return None


def reference_tail(reference: str | None) -> tuple[str, str] | None:
    """'https://ehr/fhir/Encounter/12' or 'Encounter/12' -> ('Encounter', '12'); anything else -> None.

    Only the type and id are ever used: a host named in a notification is never contacted.
    """
    if not reference:
        return None
    found = _REFERENCE.search(reference.strip())
    if found is None or not is_fhir_id(found.group(2)):  # "Encounter/.." would read the EHR's base
        return None
    return (found.group(1), found.group(2))


# --- notifications -------------------------------------------------------------------------------------------


def parse_subscription_notification(
    data: dict[str, Any], expected_discharge_extension: str | None = None
) -> SubscriptionNotification:
    """A notification Bundle (R4 backport, R4B or R5) -> SubscriptionNotification, or a 4xx naming the element."""
    kind = data.get("type")
    entries = data.get("entry")
    first = (
        entries[0].get("resource") if isinstance(entries, list) and entries and isinstance(entries[0], dict) else None
    )
    first_type = first.get("resourceType") if isinstance(first, dict) else None
    if kind == "subscription-notification":
        bundle: Any = validated(R5Bundle, data, "Bundle")
        form = NotificationForm.R5
    elif kind == "history":
        bundle = validated(Bundle, data, "Bundle")
        form = NotificationForm.R4B if first_type == "SubscriptionStatus" else NotificationForm.R4_BACKPORT
    else:
        raise InvalidResource(
            f"a subscription notification has Bundle.type 'history' (R4, R4B) or 'subscription-notification' (R5), "
            f"got {kind!r}",
            "Bundle.type",
        )
    status = bundle.entry[0].resource if bundle.entry else None
    if form is NotificationForm.R4_BACKPORT:
        if not isinstance(status, Parameters):
            raise InvalidResource(
                "the first entry of a notification must be the subscription status (Parameters or SubscriptionStatus)",
                "Bundle.entry[0]",
            )
        header = _from_parameters(status)
    else:
        expected = R5SubscriptionStatus if form is NotificationForm.R5 else R4BSubscriptionStatus
        if not isinstance(status, expected):
            raise InvalidResource("the first entry of a notification must be a SubscriptionStatus", "Bundle.entry[0]")
        header = _from_status(status)
    index = entry_index(bundle)
    events = tuple(
        _event(raw, index, data, form, expected_discharge_extension, f"{header.where}[{i}]")
        for i, raw in enumerate(header.events)
    )
    if header.type in (NotificationType.EVENT_NOTIFICATION, NotificationType.QUERY_EVENT) and not events:
        raise InvalidResource("an event-notification needs at least one notification event", header.where)
    unfocused = next((event for event in events if event.focus is None), None)
    if unfocused is not None and len(bundle.entry) > 1:
        # Only an empty notification (the status entry alone) has events without a focus; this one carries
        # resources, so it is id-only or full-resource and the event is missing what to read.
        raise InvalidResource(
            "an event of an id-only or full-resource notification names its focus", f"{unfocused.where}.focus"
        )
    return SubscriptionNotification(
        form=form,
        subscription=header.subscription,
        topic=header.topic,
        status=header.status,
        type=header.type,
        events_since_start=header.events_since_start,
        events=events,
        sent_at=instant(bundle.timestamp),
    )


class _Header:
    """The status entry, read the same way whichever form it came in."""

    def __init__(
        self,
        *,
        subscription: str,
        topic: str | None,
        status: str | None,
        type: NotificationType,
        events_since_start: int | None,
        events: list[tuple[object, object, str | None]],
        where: str,
    ) -> None:
        self.subscription = subscription
        self.topic = topic
        self.status = status
        self.type = type
        self.events_since_start = events_since_start
        self.events = events  # (event number, timestamp, focus reference)
        self.where = where


def _subscription_ref(reference: str | None, expression: str) -> str:
    tail = reference_tail(reference)
    if tail is None or tail[0] != "Subscription":
        raise InvalidResource(f"a reference to the Subscription is required (got {reference!r})", expression)
    return f"{tail[0]}/{tail[1]}"


def _status_code(value: str | None, expression: str) -> str | None:
    if value is not None and value not in SUBSCRIPTION_STATUSES:
        raise InvalidResource(f"{value!r} is not a subscription status", expression)
    return value


def _type_code(value: str | None, expression: str) -> NotificationType:
    try:
        return NotificationType(str(value))
    except ValueError:
        allowed = ", ".join(t.value for t in NotificationType)
        raise InvalidResource(f"the notification type must be one of {allowed} (got {value!r})", expression) from None


def _number(value: object, expression: str) -> int | None:
    """An event count or number: a string in R4/R4B, integer64 (a JSON string) in R5."""
    if value is None:
        return None
    text = str(value).strip()
    if not text.isdigit() or int(text) > MAX_EVENT_NUMBER:
        raise InvalidResource(f"expected a whole number, got {str(value)[:40]!r}", expression)
    return int(text)


def _from_parameters(parameters: Parameters) -> _Header:
    where = "Parameters.parameter"

    def named(name: str) -> list[Any]:
        return [p for p in parameters.parameter or [] if p.name == name]

    def one(name: str) -> Any:
        found = named(name)
        return found[0] if found else None

    def path(name: str, value: str) -> str:
        return f"{where}.where(name='{name}').{value}"

    subscription = one("subscription")
    subscription_ref = subscription.valueReference.reference if subscription and subscription.valueReference else None
    topic = one("topic")
    status = one("status")
    kind = one("type")
    count = one("events-since-subscription-start")
    events: list[tuple[object, object, str | None]] = []
    for event in named("notification-event"):
        parts = {part.name: part for part in event.part or []}
        number = parts.get("event-number")
        when = parts.get("timestamp")
        focus = parts.get("focus")
        events.append(
            (
                _number_value(number),
                (when.valueInstant or when.valueDateTime) if when else None,
                focus.valueReference.reference if focus and focus.valueReference else None,
            )
        )
    return _Header(
        subscription=_subscription_ref(subscription_ref, path("subscription", "valueReference")),
        topic=(topic.valueCanonical or topic.valueUri) if topic else None,
        status=_status_code(status.valueCode if status else None, path("status", "valueCode")),
        type=_type_code(kind.valueCode if kind else None, path("type", "valueCode")),
        events_since_start=_number(_number_value(count), path("events-since-subscription-start", "valueString")),
        events=events,
        where=f"{where}.where(name='notification-event')",
    )


def _number_value(parameter: Any) -> object:
    if parameter is None:
        return None
    for name in ("valueString", "valueUnsignedInt", "valuePositiveInt", "valueInteger", "valueDecimal"):
        value = getattr(parameter, name, None)
        if value is not None:
            return value
    return None


def _from_status(status: Any) -> _Header:
    events = [
        (event.eventNumber, event.timestamp, event.focus.reference if event.focus else None)
        for event in status.notificationEvent or []
    ]
    return _Header(
        subscription=_subscription_ref(
            status.subscription.reference if status.subscription else None, "SubscriptionStatus.subscription"
        ),
        topic=status.topic,
        status=_status_code(status.status, "SubscriptionStatus.status"),
        type=_type_code(status.type, "SubscriptionStatus.type"),
        events_since_start=_number(
            status.eventsSinceSubscriptionStart, "SubscriptionStatus.eventsSinceSubscriptionStart"
        ),
        events=events,
        where="SubscriptionStatus.notificationEvent",
    )


def _event(
    raw: tuple[object, object, str | None],
    index: dict[str, Any],
    data: dict[str, Any],
    form: NotificationForm,
    extension: str | None,
    where: str,
) -> NotifiedEvent:
    number_value, when, focus_ref = raw
    number = _number(number_value, f"{where}.eventNumber")
    if number is None:
        raise InvalidResource("every notification event needs its event number", f"{where}.eventNumber")
    if focus_ref is None:
        return NotifiedEvent(number=number, occurred_at=instant(when), focus=None, stay=None, where=where)
    tail = reference_tail(focus_ref)
    if tail is None:
        raise InvalidResource(f"the focus must be a Type/id reference (got {focus_ref[:80]!r})", f"{where}.focus")
    focus = f"{tail[0]}/{tail[1]}"
    if tail[0] != "Encounter":
        return NotifiedEvent(
            number=number, occurred_at=instant(when), focus=focus, stay=None, other_focus=True, where=where
        )
    resource = resolve(index, focus_ref)
    stay = None
    if resource is not None:
        if not isinstance(resource, Encounter | R5Encounter):
            raise InvalidResource("the focus entry must hold an Encounter", f"{where}.focus")
        stay = _stay_in_bundle(resource, index, data, form, extension)
    return NotifiedEvent(number=number, occurred_at=instant(when), focus=focus, stay=stay, where=where)


def _stay_in_bundle(
    encounter: Any, index: dict[str, Any], data: dict[str, Any], form: NotificationForm, extension: str | None
) -> Stay:
    subject = encounter.subject.reference if encounter.subject else None
    patient = resolve(index, subject)
    encounter_json = original_json(data, encounter)
    snapshot = (
        r5_snapshot(json.loads(encounter_json), encounter, extension)
        if form is NotificationForm.R5
        else encounter_snapshot(encounter, encounter_json, extension)
    )
    if patient is not None and getattr(patient, "id", None) and patient.get_resource_type() == "Patient":
        patient_snapshot = PatientSnapshot(
            ehr_id=check_id(patient.id, "Patient.id"), resource_json=original_json(data, patient)
        )
    else:
        patient_snapshot = patient_reference(subject)
    return Stay(encounter=snapshot, patient=patient_snapshot, kind=kind_of(snapshot.status))


def patient_reference(subject: str | None) -> PatientSnapshot:
    tail = reference_tail(subject)
    if tail is None or tail[0] != "Patient":
        raise InvalidResource(f"Encounter.subject must reference a Patient (got {subject!r})", "Encounter.subject")
    minimal = json.dumps({"resourceType": "Patient", "id": tail[1]}, separators=(",", ":"), sort_keys=True)
    return PatientSnapshot(ehr_id=tail[1], resource_json=minimal, complete=False)


def r5_snapshot(data: dict[str, Any], encounter: Any, extension: str | None) -> EncounterSnapshot:
    check_id(encounter.id, "Encounter.id")
    if encounter.status not in R5_TO_R4_STATUS:
        raise InvalidResource(f"Encounter.status {encounter.status!r} is not an R5 code", "Encounter.status")
    r4 = r4_encounter(data)
    admission = encounter.admission
    period = encounter.actualPeriod
    return EncounterSnapshot(
        ehr_id=str(encounter.id),
        status=r4["status"],
        start=instant(period.start) if period else None,
        end=instant(period.end) if period else None,
        discharge_disposition=codes_text(admission.dischargeDisposition) if admission else None,
        readmission=bool(admission and admission.reAdmission),
        resource_json=json.dumps(r4, separators=(",", ":"), sort_keys=True),
        updated_at=instant(encounter.meta.lastUpdated) if encounter.meta else None,
        expected_end=extension_instant(encounter, extension) or instant(encounter.plannedEndDate),
    )


def r4_encounter(data: dict[str, Any]) -> dict[str, Any]:
    """The R4 shape of an R5 Encounter for the elements Peerway reads later (the summary is R4)."""
    out: dict[str, Any] = {"resourceType": "Encounter"}
    for key in ("id", "meta", "identifier", "subject", "location", "serviceProvider", "partOf"):
        if key in data:
            out[key] = data[key]
    out["status"] = R5_TO_R4_STATUS.get(str(data.get("status")), "unknown")
    classes = data.get("class")
    codings = (
        classes[0].get("coding") if isinstance(classes, list) and classes and isinstance(classes[0], dict) else None
    )
    if isinstance(codings, list) and codings:
        out["class"] = codings[0]
    if isinstance(data.get("actualPeriod"), dict):
        out["period"] = data["actualPeriod"]
    admission = data.get("admission")
    if isinstance(admission, dict):
        out["hospitalization"] = {
            k: admission[k] for k in ("admitSource", "reAdmission", "dischargeDisposition") if k in admission
        }
    return out
