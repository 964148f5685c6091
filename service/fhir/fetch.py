"""Reads from the EHR's FHIR server for intake, and what its answers mean: the Encounters and Patients that
id-only and empty notifications point at, searches by _lastUpdated, the CapabilityStatement, $events and
$status; and Peerway's own Subscription, built here and PUT there.

Its own httpx.AsyncClient. Authorization comes from an injected async token provider, so SMART Backend
Services tokens (service/fhir/smart.py) can replace the static PEERWAY_EHR_BEARER_TOKEN without touching
this module. Never called inside a database transaction: the intake worker calls it between transactions.
Only Type/id paths under the configured base are requested; hosts named in notifications are never contacted.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
from fhir.resources.encounter import Encounter as R5Encounter
from fhir.resources.R4B.encounter import Encounter
from fhir.resources.R4B.patient import Patient

from service.domain import PatientSnapshot, Stay, SubscriptionReport
from service.errors import InvalidResource, UpstreamError
from service.fhir.client import fhir_json, retry_after
from service.fhir.parse import encounter_snapshot, instant
from service.fhir.subscription import (
    BACKPORT_SUBSCRIPTION,
    FILTER_CRITERIA,
    HEARTBEAT_PERIOD,
    PAYLOAD_CONTENT,
    TIMEOUT,
    kind_of,
    parse_subscription_notification,
    patient_reference,
    r5_snapshot,
    reference_tail,
)
from service.fhir.validation import validated

TokenProvider = Callable[[], Awaitable[str | None]]
# Answers that mean "this server does not do that" (an operation or a search it does not offer).
NOT_OFFERED = frozenset({400, 404, 405, 501})


def static_token(token: str | None) -> TokenProvider:
    """A token provider that always answers the same token (or none)."""

    async def provide() -> str | None:
        return token

    return provide


class EhrReader:
    def __init__(
        self,
        base_url: str,
        token_provider: TokenProvider,
        *,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
        fhir_version: str | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/") + "/"
        self._tokens = token_provider
        self._media_type = fhir_json(fhir_version)
        self._http = httpx.AsyncClient(
            base_url=self.base_url, headers={"Accept": self._media_type}, timeout=timeout, transport=transport
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def read(self, resource_type: str, resource_id: str) -> dict[str, Any] | None:
        """The current version of a resource, or None when the EHR says it does not exist (404 / 410)."""
        response = await self._request("GET", f"{resource_type}/{quote(resource_id, safe='')}")
        if response.status_code in (404, 410):
            return None
        return self._json(response, "GET", resource_type)

    async def search(self, resource_type: str, params: Mapping[str, str]) -> dict[str, Any]:
        """One searchset page."""
        response = await self._request("GET", resource_type, params=dict(params))
        return self._json(response, "GET", f"{resource_type}?")

    async def page(self, url: str) -> dict[str, Any]:
        """A next-page link, followed only when it stays on the EHR's base."""
        base, target = urlsplit(self.base_url), urlsplit(url)
        if (target.scheme, target.netloc) != (base.scheme, base.netloc) or not target.path.startswith(base.path):
            raise UpstreamError("the EHR's next link leaves its base URL", http_status=400)
        response = await self._request("GET", url)
        return self._json(response, "GET", "next page")

    async def operation(self, path: str, params: Mapping[str, str] | None = None) -> dict[str, Any] | None:
        """GET [base]/<path> for an operation; None when the EHR does not offer it (400/404/405/501)."""
        response = await self._request("GET", path, params=dict(params or {}))
        if response.status_code in NOT_OFFERED:
            return None
        return self._json(response, "GET", path.rsplit("/", 1)[-1])

    async def capability(self) -> dict[str, Any]:
        return self._json(await self._request("GET", "metadata"), "GET", "metadata")

    async def put(self, resource: dict[str, Any]) -> dict[str, Any]:
        path = f"{resource['resourceType']}/{quote(str(resource['id']), safe='')}"
        response = await self._request("PUT", path, json=resource, headers={"Content-Type": self._media_type})
        return self._json(response, "PUT", str(resource["resourceType"]))

    async def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        headers = dict(kwargs.pop("headers", None) or {})
        token = await self._tokens()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        try:
            return await self._http.request(method, url, headers=headers, **kwargs)
        except httpx.HTTPError as exc:
            raise UpstreamError(f"EHR unreachable: {type(exc).__name__}") from None

    @staticmethod
    def _json(response: httpx.Response, method: str, what: str) -> dict[str, Any]:
        if not response.is_success:
            outcome: dict[str, Any] | None = None
            try:
                parsed = response.json()
                outcome = parsed if isinstance(parsed, dict) else None
            except ValueError:
                outcome = None
            raise UpstreamError(
                f"EHR answered {response.status_code} to {method} {what}",
                http_status=response.status_code,
                retry_after=retry_after(response),
                outcome=outcome,
            )
        try:
            data = response.json()
        except ValueError:
            raise UpstreamError(f"EHR answered {method} {what} with something that is not JSON") from None
        if not isinstance(data, dict):
            raise UpstreamError(f"EHR answered {method} {what} with JSON that is not a resource")
        return data


# --- Encounters and Patients fetched from the EHR ------------------------------------------------------------


def is_r5_encounter(data: dict[str, Any]) -> bool:
    """An EHR answering in R5 says so in the shape of the Encounter (class is a list, actualPeriod, R5 codes)."""
    return (
        isinstance(data.get("class"), list)
        or "actualPeriod" in data
        or "admission" in data
        or data.get("status") in ("discharged", "completed", "on-hold", "discontinued")
    )


def fetched_stay(encounter_data: dict[str, Any], patient_data: dict[str, Any] | None, extension: str | None) -> Stay:
    """An Encounter (R4 or R5) and its Patient as read from the EHR -> Stay, or a 4xx naming the element."""
    text = json.dumps(encounter_data, separators=(",", ":"), sort_keys=True)
    if is_r5_encounter(encounter_data):
        snapshot = r5_snapshot(encounter_data, validated(R5Encounter, encounter_data, "Encounter"), extension)
        subject = (encounter_data.get("subject") or {}).get("reference")
    else:
        encounter = validated(Encounter, encounter_data, "Encounter")
        snapshot = encounter_snapshot(encounter, text, extension)
        subject = encounter.subject.reference if encounter.subject else None
    patient = patient_reference(subject)
    if patient_data is not None:
        model = validated(Patient, patient_data, "Patient")
        if model.id == patient.ehr_id:
            patient = PatientSnapshot(
                ehr_id=patient.ehr_id, resource_json=json.dumps(patient_data, separators=(",", ":"), sort_keys=True)
            )
    return Stay(encounter=snapshot, patient=patient, kind=kind_of(snapshot.status))


def patient_id_of(encounter_data: dict[str, Any]) -> str | None:
    """The Patient id an Encounter's subject names (for fetching it next), if it names one."""
    subject = encounter_data.get("subject")
    tail = reference_tail(subject.get("reference") if isinstance(subject, dict) else None)
    return tail[1] if tail is not None and tail[0] == "Patient" else None


def patient_json(data: dict[str, Any]) -> str:
    """A Patient read from the EHR, checked, as the snapshot text kept for the client."""
    validated(Patient, data, "Patient")
    return json.dumps(data, separators=(",", ":"), sort_keys=True)


# --- Peerway's Subscription, and what the EHR says about it ----------------------------------------------


def backport_subscription(
    *,
    subscription_id: str,
    topic: str,
    endpoint: str,
    header: str,
    payload: str,
    heartbeat_seconds: int,
    timeout_seconds: int,
    filter_criteria: str | None,
) -> dict[str, Any]:
    """Peerway's Subscription in R4 backport form (rest-hook, application/fhir+json, secret header)."""
    channel: dict[str, Any] = {
        "extension": [{"url": TIMEOUT, "valueUnsignedInt": timeout_seconds}],
        "type": "rest-hook",
        "endpoint": endpoint,
        "payload": "application/fhir+json",
        "_payload": {"extension": [{"url": PAYLOAD_CONTENT, "valueCode": payload}]},
        "header": [header],
    }
    if heartbeat_seconds > 0:
        channel["extension"].insert(0, {"url": HEARTBEAT_PERIOD, "valueUnsignedInt": heartbeat_seconds})
    subscription: dict[str, Any] = {
        "resourceType": "Subscription",
        "id": subscription_id,
        "meta": {"profile": [BACKPORT_SUBSCRIPTION]},
        "status": "requested",
        "reason": "Peerway: hospital stays of clients in a Transitional Discharge Model peer-support program",
        "criteria": topic,
        "channel": channel,
    }
    if filter_criteria:
        subscription["_criteria"] = {"extension": [{"url": FILTER_CRITERIA, "valueString": filter_criteria}]}
    return subscription


def subscription_report(data: dict[str, Any], source: str) -> SubscriptionReport:
    """The answer to $status (a notification Bundle) or to a read of the Subscription -> SubscriptionReport."""
    if data.get("resourceType") == "Bundle":
        note = parse_subscription_notification(data)
        return SubscriptionReport(
            subscription=note.subscription,
            status=note.status,
            events_since_start=note.events_since_start,
            heartbeat_seconds=None,
            topic=note.topic,
            error=None,
            source=source,
        )
    if data.get("resourceType") != "Subscription":
        raise InvalidResource("expected a Subscription or a status Bundle", "resourceType")
    found = data.get("channel")
    channel: dict[str, Any] = found if isinstance(found, dict) else {}
    heartbeat = next(
        (
            e.get("valueUnsignedInt")
            for e in channel.get("extension") or []
            if isinstance(e, dict) and e.get("url") == HEARTBEAT_PERIOD
        ),
        None,
    )
    return SubscriptionReport(
        subscription=f"Subscription/{data.get('id')}",
        status=str(data["status"]) if data.get("status") else None,
        events_since_start=None,
        heartbeat_seconds=int(heartbeat) if isinstance(heartbeat, int) else None,
        topic=str(data["criteria"]) if data.get("criteria") else None,
        error=str(data["error"]) if data.get("error") else None,
        source=source,
    )


def offers_events_operation(capability: dict[str, Any]) -> bool:
    """Whether the EHR's CapabilityStatement names the $events operation (on Subscription or server-wide)."""
    for rest in capability.get("rest") or []:
        if not isinstance(rest, dict):
            continue
        operations = list(rest.get("operation") or [])
        for resource in rest.get("resource") or []:
            if isinstance(resource, dict) and resource.get("type") == "Subscription":
                operations += resource.get("operation") or []
        for operation in operations:
            if isinstance(operation, dict) and (
                operation.get("name") == "events" or str(operation.get("definition", "")).endswith("-events")
            ):
                return True
    return False


def changed_encounters(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    """The Encounters of a searchset page (anything else, e.g. an OperationOutcome, is left out)."""
    return [
        entry["resource"]
        for entry in bundle.get("entry") or []
        if isinstance(entry, dict)
        and isinstance(entry.get("resource"), dict)
        and entry["resource"].get("resourceType") == "Encounter"
    ]


def last_updated(resource: dict[str, Any]) -> datetime | None:
    meta = resource.get("meta")
    value = meta.get("lastUpdated") if isinstance(meta, dict) else None
    if not isinstance(value, str):
        return None
    try:
        return instant(datetime.fromisoformat(value.replace("Z", "+00:00")))
    except ValueError:
        return None


def next_link(bundle: dict[str, Any]) -> str | None:
    for link in bundle.get("link") or []:
        if isinstance(link, dict) and link.get("relation") == "next" and isinstance(link.get("url"), str):
            return str(link["url"])
    return None
