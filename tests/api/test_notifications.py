"""Readmissions reach the coordinators, and the assigned peer as far as the client's consent allows, at once,
through feeds that say no more than "your client <id> was readmitted"; upcoming discharges reach coordinators,
and the assigned peer as far as the client's consent allows. What a peer is told is accounted as a disclosure."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from service.auth import Role
from service.settings import Settings
from tests.api.test_subscriptions import event_notification, instant, notify, stay
from tests.conftest import fixture_json
from tests.support.consents import peer_consent
from tests.support.flow import ADMIT, DISCHARGE, assign, discharge, register_peer

Auth = Callable[..., dict[str, str]]
EXPECTED_DISCHARGE = "https://hospital.example.org/fhir/StructureDefinition/expected-discharge"
NOTIFICATION_KEYS = {"id", "event", "client_id", "patient", "episode_id", "recorded_at"}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"notification_feed_overlap_seconds": 0.0, "expected_discharge_extension": EXPECTED_DISCHARGE}
    )


def new_stay(bundle_name: str, encounter_id: str, **changes: Any) -> dict[str, Any]:
    """A Da Vinci example about another hospital stay of the same patient (a new Encounter id)."""
    bundle = copy.deepcopy(fixture_json(bundle_name))
    bundle["id"] = f"{bundle['id']}-{encounter_id}"
    bundle["timestamp"] = instant(datetime.now(UTC))
    encounter = bundle["entry"][1]["resource"]
    encounter["id"] = encounter_id
    encounter.pop("meta", None)
    encounter.update(changes)
    return bundle


async def process(client: httpx.AsyncClient, auth: Auth, bundle: dict[str, Any]) -> None:
    response = await client.post(
        "/fhir/$process-message", content=json.dumps(bundle), headers=auth(Role.EHR_SYSTEM, "hospital")
    )
    assert response.status_code == 200, response.text


async def feed(client: httpx.AsyncClient, headers: dict[str, str], path: str, since: str | None = None) -> Any:
    response = await client.get(path, params={"_since": since} if since else None, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


async def discharged_with_peer(client: httpx.AsyncClient, auth: Auth) -> tuple[dict[str, Any], dict[str, Any]]:
    await discharge(client, auth, ADMIT)
    episode = await discharge(client, auth, DISCHARGE)
    peer = await register_peer(client, auth, "Robin Peer")
    await assign(client, auth, episode["id"], peer["id"])
    return episode, peer


async def consent_to_admissions(
    client: httpx.AsyncClient, auth: Auth, episode: dict[str, Any], peer: dict[str, Any], *categories: str
) -> dict[str, Any]:
    """The client's Consent letting the peer see the categories named (admission-discharge unless named)."""
    consent = peer_consent(episode["patient"], list(categories or ["admission-discharge"]), actor=peer["practitioner"])
    response = await client.post("/fhir/Consent", json=consent, headers=auth(Role.COORDINATOR, "c"))
    assert response.status_code == 201, response.text
    stored: dict[str, Any] = response.json()
    return stored


async def disclosures_to(
    client: httpx.AsyncClient, auth: Auth, episode: dict[str, Any], peer: dict[str, Any]
) -> list[dict[str, Any]]:
    """The client's accounting of disclosures (GET /fhir/AuditEvent?patient=), the entries naming the peer."""
    response = await client.get(
        "/fhir/AuditEvent", params={"patient": episode["patient"]}, headers=auth(Role.COORDINATOR, "c")
    )
    assert response.status_code == 200, response.text
    events = [e["resource"] for e in response.json().get("entry", [])]
    return [e for e in events if any(a.get("who", {}).get("reference") == peer["practitioner"] for a in e["agent"])]


async def test_a_readmission_tells_the_assigned_peer_and_the_coordinators_and_nothing_more(
    client: httpx.AsyncClient, auth: Auth
) -> None:
    first, peer = await discharged_with_peer(client, auth)
    await consent_to_admissions(client, auth, first, peer)
    other = await register_peer(client, auth, "Other Peer")
    as_peer, as_other = auth(Role.PEER, peer["id"]), auth(Role.PEER, other["id"])
    assert (await feed(client, as_peer, "/api/me/notifications"))["notifications"] == []

    await process(client, auth, new_stay(ADMIT, "second-stay"))

    [item] = (await feed(client, as_peer, "/api/me/notifications"))["notifications"]
    assert set(item) == NOTIFICATION_KEYS  # ids, the event and when: no dates of the stay, unit or reasons
    assert (item["event"], item["client_id"], item["patient"]) == (
        "readmitted",
        first["client_id"],
        f"Patient/{first['client_id']}",
    )
    assert item["episode_id"] != first["id"]
    [for_coordinators] = (await feed(client, auth(Role.COORDINATOR, "c"), "/api/notifications"))["notifications"]
    assert for_coordinators["episode_id"] == item["episode_id"]
    assert (await feed(client, as_other, "/api/me/notifications"))["notifications"] == []
    # The peer stays with the client through the readmission.
    mine = (await client.get("/api/me/clients", headers=as_peer)).json()
    assert [c["client_id"] for c in mine] == [first["client_id"]]


async def test_the_feed_goes_on_from_next_since(client: httpx.AsyncClient, auth: Auth) -> None:
    first, peer = await discharged_with_peer(client, auth)
    await consent_to_admissions(client, auth, first, peer)
    as_peer = auth(Role.PEER, peer["id"])
    await process(client, auth, new_stay(ADMIT, "second-stay"))
    page = await feed(client, as_peer, "/api/me/notifications")
    assert len(page["notifications"]) == 1
    assert (await feed(client, as_peer, "/api/me/notifications", page["next_since"]))["notifications"] == []

    await process(client, auth, new_stay(DISCHARGE, "second-stay"))
    await process(client, auth, new_stay(ADMIT, "third-stay"))
    later = await feed(client, as_peer, "/api/me/notifications", page["next_since"])
    assert [n["event"] for n in later["notifications"]] == ["readmitted"]
    assert later["notifications"][0]["id"] != page["notifications"][0]["id"]


async def test_a_peer_no_longer_assigned_stops_seeing_the_clients_notifications(
    client: httpx.AsyncClient, auth: Auth
) -> None:
    first, peer = await discharged_with_peer(client, auth)
    await consent_to_admissions(client, auth, first, peer)
    await process(client, auth, new_stay(ADMIT, "second-stay"))
    episodes = (await client.get("/api/episodes", headers=auth(Role.COORDINATOR, "c"))).json()
    successor = await register_peer(client, auth, "Next Peer")
    await assign(client, auth, episodes[-1]["id"], successor["id"])
    assert (await feed(client, auth(Role.PEER, peer["id"]), "/api/me/notifications"))["notifications"] == []


async def test_a_readmission_is_not_told_to_a_peer_the_consent_withholds_admission_discharge_from(
    client: httpx.AsyncClient, auth: Auth
) -> None:
    first, peer = await discharged_with_peer(client, auth)
    await consent_to_admissions(client, auth, first, peer, "preferred-name")  # a consent, but not for the stay

    await process(client, auth, new_stay(ADMIT, "second-stay"))

    [item] = (await feed(client, auth(Role.COORDINATOR, "c"), "/api/notifications"))["notifications"]
    assert (item["event"], item["client_id"]) == ("readmitted", first["client_id"])
    page = await feed(client, auth(Role.PEER, peer["id"]), "/api/me/notifications")
    assert page["notifications"] == []
    assert page["next_since"]  # the feed still moves on
    assert await disclosures_to(client, auth, first, peer) == []
    # A consent given afterwards does not send the peer a readmission that was told to the coordinators alone.
    await consent_to_admissions(client, auth, first, peer)
    assert (await feed(client, auth(Role.PEER, peer["id"]), "/api/me/notifications"))["notifications"] == []


async def test_a_readmission_the_consent_permits_is_told_to_the_peer_and_accounted_as_a_disclosure(
    client: httpx.AsyncClient, auth: Auth
) -> None:
    first, peer = await discharged_with_peer(client, auth)
    consent = await consent_to_admissions(client, auth, first, peer)
    await process(client, auth, new_stay(ADMIT, "second-stay"))
    assert await disclosures_to(client, auth, first, peer) == []  # told nothing yet: nothing accounted

    as_peer = auth(Role.PEER, peer["id"])
    page = await feed(client, as_peer, "/api/me/notifications")
    [item] = page["notifications"]
    assert (item["event"], item["client_id"]) == ("readmitted", first["client_id"])
    [event] = await disclosures_to(client, auth, first, peer)
    assert event["outcome"] == "0"
    assert {"what": {"reference": f"Consent/{consent['id']}"}, "description": "deciding consent"} in event["entity"]
    disclosed = [e["type"]["code"] for e in event["entity"] if e.get("description") == "disclosed"]
    assert disclosed == ["admission-discharge"]
    # The next poll tells nothing new, and accounts for nothing more.
    assert (await feed(client, as_peer, "/api/me/notifications", page["next_since"]))["notifications"] == []
    assert len(await disclosures_to(client, auth, first, peer)) == 1


async def test_a_consent_withdrawn_before_the_peer_reads_hides_the_readmission(
    client: httpx.AsyncClient, auth: Auth
) -> None:
    first, peer = await discharged_with_peer(client, auth)
    consent = await consent_to_admissions(client, auth, first, peer)
    await process(client, auth, new_stay(ADMIT, "second-stay"))  # permitted when the readmission came in

    consent["status"] = "inactive"
    withdrawn = await client.put(f"/fhir/Consent/{consent['id']}", json=consent, headers=auth(Role.COORDINATOR, "c"))
    assert withdrawn.status_code == 200, withdrawn.text

    page = await feed(client, auth(Role.PEER, peer["id"]), "/api/me/notifications")
    assert page["notifications"] == []
    assert await disclosures_to(client, auth, first, peer) == []
    [told] = (await feed(client, auth(Role.COORDINATOR, "c"), "/api/notifications"))["notifications"]
    # Nor does the feed's next_since give away when the hidden readmission was recorded.
    assert datetime.fromisoformat(page["next_since"]) > datetime.fromisoformat(told["recorded_at"])


async def test_a_flagged_readmission_of_a_new_client_reaches_the_coordinators(
    client: httpx.AsyncClient, auth: Auth
) -> None:
    encounter = stay(status="in-progress", hospitalization={"reAdmission": {"text": "within 30 days"}})
    assert (await notify(client, auth, event_notification(1, encounter))).status_code == 200
    [item] = (await feed(client, auth(Role.COORDINATOR, "c"), "/api/notifications"))["notifications"]
    assert item["event"] == "readmitted"


async def test_a_new_stay_while_the_client_is_on_the_ward_is_not_a_readmission(
    client: httpx.AsyncClient, auth: Auth
) -> None:
    await discharge(client, auth, ADMIT)
    await process(client, auth, new_stay(ADMIT, "second-stay"))
    assert (await feed(client, auth(Role.COORDINATOR, "c"), "/api/notifications"))["notifications"] == []


@pytest.mark.parametrize(
    ("path", "role", "status"),
    [("/api/me/notifications", Role.COORDINATOR, 403), ("/api/notifications", Role.PEER, 403)],
)
async def test_each_feed_is_for_its_role(
    client: httpx.AsyncClient, auth: Auth, path: str, role: Role, status: int
) -> None:
    assert (await client.get(path, headers=auth(role, "someone"))).status_code == status


async def test_since_needs_a_time_zone(client: httpx.AsyncClient, auth: Auth) -> None:
    response = await client.get(
        "/api/notifications", params={"_since": "2026-11-20T10:00:00"}, headers=auth(Role.COORDINATOR, "c")
    )
    assert response.status_code == 400
    assert response.json()["resourceType"] == "OperationOutcome"


# --- upcoming discharges -------------------------------------------------------------------------------------


async def test_an_expected_discharge_date_reaches_the_coordinators_list_until_the_discharge(
    client: httpx.AsyncClient, auth: Auth
) -> None:
    expected = datetime.now(UTC).replace(microsecond=0) + timedelta(days=4)
    admitted = new_stay(
        ADMIT, "stay-x", period={"start": instant(expected - timedelta(days=10)), "end": instant(expected)}
    )
    await process(client, auth, admitted)
    as_coordinator = auth(Role.COORDINATOR, "c")
    [item] = (await client.get("/api/discharges/upcoming", headers=as_coordinator)).json()
    assert item["expected_discharge_at"] == instant(expected)
    await process(client, auth, new_stay(DISCHARGE, "stay-x"))
    assert (await client.get("/api/discharges/upcoming", headers=as_coordinator)).json() == []


async def test_a_period_end_already_past_is_not_an_expected_discharge(client: httpx.AsyncClient, auth: Auth) -> None:
    await discharge(client, auth, ADMIT)  # in-progress, period.end two years before the message was sent
    assert (await client.get("/api/discharges/upcoming", headers=auth(Role.COORDINATOR, "c"))).json() == []


async def test_the_extension_the_deployment_names_carries_the_expected_date(
    client: httpx.AsyncClient, auth: Auth
) -> None:
    extension = [{"url": EXPECTED_DISCHARGE, "valueDateTime": "2027-01-15T12:00:00Z"}]
    encounter = stay(status="in-progress", extension=extension)
    assert (await notify(client, auth, event_notification(1, encounter))).status_code == 200
    [item] = (await client.get("/api/discharges/upcoming", headers=auth(Role.COORDINATOR, "c"))).json()
    assert item["expected_discharge_at"] == "2027-01-15T12:00:00Z"


async def test_the_peer_sees_an_expected_discharge_only_with_consent_and_it_is_audited(
    client: httpx.AsyncClient, auth: Auth
) -> None:
    _, peer = await discharged_with_peer(client, auth)
    expected = datetime.now(UTC).replace(microsecond=0) + timedelta(days=2)
    period = {"start": instant(expected - timedelta(days=3)), "end": instant(expected)}
    await process(client, auth, new_stay(ADMIT, "second-stay", period=period))
    as_peer, as_coordinator = auth(Role.PEER, peer["id"]), auth(Role.COORDINATOR, "c")
    assert (await client.get("/api/me/discharges/upcoming", headers=as_peer)).json() == []

    [episode] = [
        e for e in (await client.get("/api/episodes", headers=as_coordinator)).json() if e["state"] == "on-ward"
    ]
    consent = peer_consent(episode["patient"], ["admission-discharge"], actor=peer["practitioner"])
    assert (await client.post("/fhir/Consent", json=consent, headers=as_coordinator)).status_code == 201
    [item] = (await client.get("/api/me/discharges/upcoming", headers=as_peer)).json()
    assert (item["client_id"], item["expected_discharge_at"], item["readmission"]) == (
        episode["client_id"],
        instant(expected),
        True,
    )
    assert item["peer_id"] is None  # the peer's list names no other peer
    other = await register_peer(client, auth, "Other Peer")
    assert (await client.get("/api/me/discharges/upcoming", headers=auth(Role.PEER, other["id"]))).json() == []

    audit = await client.get("/fhir/AuditEvent", params={"patient": episode["patient"]}, headers=as_coordinator)
    [event] = [e["resource"] for e in audit.json()["entry"]]
    assert event["outcome"] == "0"
    assert any(a.get("who", {}).get("reference") == peer["practitioner"] for a in event["agent"])
