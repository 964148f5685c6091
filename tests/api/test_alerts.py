"""The safety net as a coordinator, an organization's coordinator and a peer meet it over the API: alerts
listed, acknowledged, closed by the run when the condition ends or resolved by confirming a drop-out; thresholds;
supervision check-ins; a peer's own weeks; and the outcomes operation's refusals."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
from fastapi import FastAPI

from service.app.alerts import run_safety_net
from service.auth import Role
from service.settings import Settings
from tests.support.consents import peer_consent
from tests.support.delivery import outbox
from tests.support.flow import assign, discharge, peer_contact, register_peer

Auth = Callable[..., dict[str, str]]


async def _run(app: FastAPI, now: datetime | None = None) -> tuple[int, int]:
    run = await run_safety_net(app.state.sessions, app.state.settings, now)
    return run.opened, run.closed


async def _alerts(client: httpx.AsyncClient, auth: Auth, **params: str) -> list[dict[str, object]]:
    response = await client.get("/api/alerts", params=params, headers=auth(Role.COORDINATOR, "coord"))
    assert response.status_code == 200, response.text
    listed: list[dict[str, object]] = response.json()
    return listed


async def test_an_alert_from_open_to_a_confirmed_drop_out(app: FastAPI, client: httpx.AsyncClient, auth: Auth) -> None:
    episode = await discharge(client, auth)  # discharged in 2018: nobody assigned, nobody in touch since
    assert await _run(app) == (3, 0)
    assert await _run(app) == (0, 0)
    alerts = {a["kind"]: a for a in await _alerts(client, auth)}
    assert set(alerts) == {"no-contact", "unassigned", "below-minimum"}
    silent = alerts["no-contact"]
    assert silent["client_id"] == episode["client_id"]
    assert silent["state"] == "open"
    assert isinstance(silent["days"], int)
    assert silent["days"] > 7

    # Another site's coordinator neither sees it nor reaches it.
    elsewhere = auth(Role.COORDINATOR, "c", site="elsewhere")
    assert (await client.get("/api/alerts", headers=elsewhere)).json() == []
    refused = await client.post(f"/api/alerts/{silent['id']}/acknowledge", headers=elsewhere)
    assert refused.status_code == 404
    assert refused.headers["content-type"].startswith("application/fhir+json")

    acknowledged = await client.post(f"/api/alerts/{silent['id']}/acknowledge", headers=auth(Role.COORDINATOR, "coord"))
    assert acknowledged.status_code == 200
    assert acknowledged.json()["state"] == "acknowledged"
    assert acknowledged.json()["acknowledged_by"].endswith(":coord")  # who, as their token names them

    # A peer is assigned: the run closes the unassigned alert by itself; the silence goes on.
    peer = await register_peer(client, auth)
    await assign(client, auth, episode["id"], peer["id"])
    assert await _run(app) == (0, 1)
    states = {a["kind"]: (a["state"], a["resolution"]) for a in await _alerts(client, auth, state="resolved")}
    assert states == {"unassigned": ("resolved", "condition-ended")}

    bad = await client.post(
        f"/api/alerts/{silent['id']}/resolve", json={"end_reason": "vanished"}, headers=auth(Role.COORDINATOR, "coord")
    )
    assert bad.status_code in (400, 422)
    assert bad.json()["issue"][0]["expression"] == ["end_reason"]

    # The coordinator confirms the drop-out: the episode ends with that reason, the alert is resolved.
    confirmed = await client.post(
        f"/api/alerts/{silent['id']}/resolve",
        json={"end_reason": "no-contact", "note": "three calls, no answer"},
        headers=auth(Role.COORDINATOR, "coord"),
    )
    assert confirmed.status_code == 200, confirmed.text
    assert (confirmed.json()["state"], confirmed.json()["resolution"]) == ("resolved", "episode-ended")
    history = await client.get(f"/api/episodes/{episode['id']}/history", headers=auth(Role.COORDINATOR, "coord"))
    assert history.json()["end_reason"] == "no-contact"
    assert await _run(app) == (0, 1)  # the episode is closed: its weeks under the minimum end too
    assert await _alerts(client, auth) == []
    assert await _run(app) == (0, 0)
    again = await client.post(f"/api/alerts/{silent['id']}/acknowledge", headers=auth(Role.COORDINATOR, "coord"))
    assert again.status_code == 409

    wrong = await client.get("/api/alerts", params={"state": "forgotten"}, headers=auth(Role.COORDINATOR, "coord"))
    assert wrong.status_code in (400, 422)
    assert "state" in wrong.json()["issue"][0]["expression"][0]
    assert (await client.get("/api/alerts", headers=auth(Role.PEER, peer["id"]))).status_code == 403


async def test_thresholds_are_the_sites_own(client: httpx.AsyncClient, auth: Auth) -> None:
    coordinator = auth(Role.COORDINATOR, "coord")
    assert (await client.get("/api/alerts/thresholds", headers=coordinator)).json() == {
        "no_contact_days": 7,
        "unassigned_days": 3,
        "weekly_minimum_minutes": 60,
        "ehr_flags": False,
    }
    wanted = {"no_contact_days": 5, "unassigned_days": 2, "weekly_minimum_minutes": 90, "ehr_flags": True}
    assert (await client.put("/api/alerts/thresholds", json=wanted, headers=coordinator)).json() == wanted
    assert (await client.get("/api/alerts/thresholds", headers=coordinator)).json() == wanted
    other = await client.get("/api/alerts/thresholds", headers=auth(Role.COORDINATOR, "c", site="elsewhere"))
    assert other.json()["no_contact_days"] == 7
    refused = await client.put("/api/alerts/thresholds", json={**wanted, "no_contact_days": 0}, headers=coordinator)
    assert refused.status_code == 422
    assert "no_contact_days" in refused.json()["issue"][0]["expression"][0]


async def test_a_flag_written_is_closed_even_after_the_site_turned_flags_off(
    app: FastAPI, client: httpx.AsyncClient, auth: Auth, settings: Settings
) -> None:
    coordinator = auth(Role.COORDINATOR, "coord")
    flags_on = {"no_contact_days": 7, "unassigned_days": 3, "weekly_minimum_minutes": 60, "ehr_flags": True}
    assert (await client.put("/api/alerts/thresholds", json=flags_on, headers=coordinator)).status_code == 200
    episode = await discharge(client, auth)
    await _run(app)
    assert sorted(row.kind for row in await outbox(settings.database_url)) == ["flag", "flag"]  # opened, flagged
    flags_off = {**flags_on, "ehr_flags": False}
    assert (await client.put("/api/alerts/thresholds", json=flags_off, headers=coordinator)).status_code == 200
    peer = await register_peer(client, auth)
    await assign(client, auth, episode["id"], peer["id"])
    assert await _run(app) == (0, 1)  # the unassigned alert closes: its Flag at the EHR must turn inactive
    assert [row.kind for row in await outbox(settings.database_url)].count("flag") == 3


async def test_supervision_check_ins_and_the_overdue_alert(app: FastAPI, client: httpx.AsyncClient, auth: Auth) -> None:
    peer = await register_peer(client, auth)
    org = auth(Role.ORGANIZATION_COORDINATOR, "oc", org="default")
    url = f"/api/org/peers/{peer['id']}/check-ins"
    notes = await client.post(url, json={"held_on": "2026-11-02", "outcome": "well", "notes": "x"}, headers=org)
    assert notes.status_code == 422  # no room for notes
    assert "notes" in notes.json()["issue"][0]["expression"][0]
    today = datetime.now(UTC).date()
    held = (today - timedelta(days=40)).isoformat()
    made = await client.post(url, json={"held_on": held, "outcome": "support-offered"}, headers=org)
    assert made.status_code == 201, made.text
    assert [c["outcome"] for c in (await client.get(url, headers=org)).json()] == ["support-offered"]
    assert (await client.get(url, headers=auth(Role.ORGANIZATION_COORDINATOR, "x", org="other"))).status_code == 404

    assert await _run(app) == (1, 0)  # 40 days since the last one, 28 allowed
    overdue = (await client.get("/api/org/alerts", headers=org)).json()
    assert [(a["kind"], a["peer_id"]) for a in overdue] == [("supervision-overdue", peer["id"])]
    assert await _alerts(client, auth) == []  # a site's coordinator does not see the organization's
    today_check = await client.post(url, json={"held_on": today.isoformat(), "outcome": "well"}, headers=org)
    assert today_check.status_code == 201
    assert await _run(app) == (0, 1)


async def test_a_peer_sees_their_clients_weeks_only_where_the_client_shares_their_stay(
    client: httpx.AsyncClient, auth: Auth
) -> None:
    episode = await discharge(client, auth)
    peer = await register_peer(client, auth)
    await assign(client, auth, episode["id"], peer["id"])
    start = datetime.now(UTC) - timedelta(days=10)  # inside the last complete week, whichever it is
    period = {"start": start.isoformat(), "end": (start + timedelta(minutes=75)).isoformat()}
    contact = peer_contact(episode["client_id"], minutes=75, period=period)
    contact["length"]["value"] = 75
    as_peer = auth(Role.PEER, peer["id"])
    posted = await client.post("/fhir/Encounter", json=contact, headers=as_peer)
    assert posted.status_code == 201, posted.text

    # Weeks count from the discharge: a client who shares only their name does not share when that was.
    await disclosures_to(client, auth, episode, peer, ["preferred-name"])
    assert (await client.get("/api/me/weeks", headers=as_peer)).json() == []
    assert await disclosures_to(client, auth, episode, peer) == []

    await disclosures_to(client, auth, episode, peer, ["admission-discharge"])
    weeks = (await client.get("/api/me/weeks", headers=as_peer)).json()
    assert len(weeks) == 4
    assert [(w["minutes"], w["below_minimum"]) for w in weeks].count((75, False)) == 1
    assert [w["below_minimum"] for w in weeks].count(True) == 3
    [audited] = await disclosures_to(client, auth, episode, peer)  # the read is a disclosure of the stay
    assert audited["outcome"] == "0"
    other = await register_peer(client, auth, "Sam Lee")
    assert (await client.get("/api/me/weeks", headers=auth(Role.PEER, other["id"]))).json() == []


async def disclosures_to(
    client: httpx.AsyncClient,
    auth: Auth,
    episode: dict[str, object],
    peer: dict[str, object],
    consent_to: list[str] | None = None,
) -> list[dict[str, object]]:
    """With `consent_to`: record the client's Consent sharing those categories with the peer (the newest one
    holds) and answer []. Without: the client's accounting of disclosures to the peer (AuditEvents naming them)."""
    coordinator = auth(Role.COORDINATOR, "c")
    if consent_to is not None:
        consent = peer_consent(str(episode["patient"]), consent_to, actor=str(peer["practitioner"]))
        answer = await client.post("/fhir/Consent", json=consent, headers=coordinator)
        assert answer.status_code == 201, answer.text
        return []
    found = await client.get("/fhir/AuditEvent", params={"patient": str(episode["patient"])}, headers=coordinator)
    assert found.status_code == 200, found.text
    events = [e["resource"] for e in found.json().get("entry", [])]
    return [e for e in events if any(a.get("who", {}).get("reference") == peer["practitioner"] for a in e["agent"])]


async def test_evaluate_measure_refuses_what_it_cannot_answer(client: httpx.AsyncClient, auth: Auth) -> None:
    admin = auth(Role.ADMINISTRATOR, "manager")
    base = "/fhir/Measure/$evaluate-measure"
    period = {"periodStart": "2026-01-01", "periodEnd": "2026-06-30"}
    cases = [
        ({**period}, "measure"),
        ({"measure": "https://example.org/Measure/x", **period}, "measure"),
        ({"measure": "Measure/drop-outs", "periodEnd": "2026-06-30"}, "periodStart"),
        ({"measure": "Measure/drop-outs", **period, "reportType": "subject-list"}, "reportType"),
        ({"measure": "Measure/drop-outs", "periodStart": "2026-13-01", "periodEnd": "2026-06-30"}, "periodStart"),
        ({"measure": "Measure/drop-outs", "periodStart": "2026-06-01", "periodEnd": "2026-01-31"}, "periodEnd"),
        ({"measure": "Measure/drop-outs", **period, "reportType": "summary"}, "reportType"),  # not an R4 code
        ({"measure": "Measure/drop-outs", **period, "reportType": "subject"}, "reportType"),
        ({"measure": "Measure/drop-outs", **period, "subject": "Patient/p1"}, "subject"),  # refused, as by POST
        ({"measure": "Measure/drop-outs|9.9.9", **period}, "measure"),
        # Periods overlapping by a day would single out one event: whole calendar months only.
        ({"measure": "Measure/drop-outs", "periodStart": "2026-01-02", "periodEnd": "2026-06-30"}, "periodStart"),
        ({"measure": "Measure/drop-outs", "periodStart": "2026-01-01", "periodEnd": "2026-06-29"}, "periodEnd"),
        ({"measure": "Measure/drop-outs", "periodStart": "9999-01-01", "periodEnd": "9999-12-31"}, "periodEnd"),
    ]
    for params, element in cases:
        response = await client.get(base, params=params, headers=admin)
        assert 400 <= response.status_code < 500, (params, response.text)
        assert response.json()["resourceType"] == "OperationOutcome"
        assert response.json()["issue"][0]["expression"] == [element], params
    assert (
        await client.get("/fhir/Measure/nothing/$evaluate-measure", params=period, headers=admin)
    ).status_code == 404
    assert (await client.get(base, params=period, headers=auth(Role.PEER, "p"))).status_code == 403
    far = {"periodStart": "9999-01-01", "periodEnd": "9999-12-31"}
    for url in ("/api/outcomes.csv", "/api/outcomes/charts/readmissions.svg"):
        refused = await client.get(url, params=far, headers=admin)
        assert refused.status_code == 422, refused.text  # not a 500
        assert refused.json()["issue"][0]["expression"] == ["periodEnd"]
    last = {"measure": "Measure/readmission-90-day", "periodStart": "9999-01-01", "periodEnd": "9999-11-30"}
    pending = await client.get(base, params=last, headers=admin)
    assert (pending.status_code, pending.json()["status"]) == (200, "pending")  # far, but a real calendar month
    population = await client.get(
        base, params={"measure": "Measure/drop-outs|0.1.0", **period, "reportType": "population"}, headers=admin
    )
    assert population.status_code == 200, population.text
    assert population.json()["type"] == "summary"

    got = await client.get(
        base, params={"measure": "https://peerway.github.io/fhir/Measure/drop-outs", **period}, headers=admin
    )
    posted = await client.post(
        base,
        json={
            "resourceType": "Parameters",
            "parameter": [
                {"name": "measure", "valueCanonical": "https://peerway.github.io/fhir/Measure/drop-outs"},
                {"name": "periodStart", "valueDate": "2026-01-01"},
                {"name": "periodEnd", "valueDate": "2026-06-30"},
            ],
        },
        headers={**admin, "Content-Type": "application/fhir+json"},
    )
    assert got.status_code == posted.status_code == 200, posted.text
    assert got.json()["group"] == posted.json()["group"]
    assert got.json()["measure"] == "https://peerway.github.io/fhir/Measure/drop-outs"
    definition = await client.get("/fhir/Measure/drop-outs")  # the definition itself is public
    assert definition.status_code == 200
    assert definition.json()["url"] == got.json()["measure"]
