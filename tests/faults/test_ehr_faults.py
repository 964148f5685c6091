"""The EHR misbehaves while a `peerway worker` delivers: it cannot be reached, then answers 503 with
Retry-After; its tokens expire early and are revoked; it refuses writes with 422. Nothing is lost or doubled,
and what it refuses for good waits, with its OperationOutcome, for a person to replay or discard."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest
from fastapi import FastAPI

from service.auth import Role
from service.settings import Settings
from tests.faults.support import (
    PEERWAY,
    Outbox,
    TcpProxy,
    WorkerProcess,
    contacts_at_the_ehr,
    record_contacts,
    report,
    wait_until,
    worker_env,
)
from tests.support import smart_ehr
from tests.support.ehr import TestEhr
from tests.support.keys import generate, public_jwks, write_key

pytestmark = [pytest.mark.ehr, pytest.mark.faults]
Auth = Callable[..., dict[str, str]]
CLIENT_ID = "peerway-faults"


@pytest.fixture
def proxy(ehr: TestEhr) -> Iterator[TcpProxy]:
    """The worker's way to the EHR, which the test can cut (connection refused) and restore."""
    target = urlparse(ehr.base_url)
    link = TcpProxy(target.hostname or "127.0.0.1", target.port or 80)
    link.up()
    yield link
    link.close()


def encounter_writes(ehr: TestEhr) -> list[dict[str, object]]:
    return [
        r
        for r in smart_ehr.timed_requests(ehr)
        if r["method"] == "PUT" and str(r["path"]).startswith("/fhir/Encounter/")
    ]


async def test_an_outage_then_503s_with_retry_after_lose_and_double_nothing(
    app: FastAPI,
    client: httpx.AsyncClient,
    auth: Auth,
    settings: Settings,
    ehr: TestEhr,
    proxy: TcpProxy,
    tmp_path: Path,
) -> None:
    contacts = await record_contacts(app, client, auth, 300)
    outbox = Outbox(settings.database_url)
    worker = WorkerProcess(worker_env(settings, proxy.base_url()), tmp_path / "worker.log")
    try:
        await wait_until(lambda: ehr.count("Encounter") >= 50, within=60, what="50 contacts", workers=[worker])

        proxy.down()  # connection refused
        cut = time.monotonic()

        async def retried_while_down() -> bool:
            waiting = [r for r in await outbox.rows(status="pending") if r.attempts >= 2 and r.last_status is None]
            return len(waiting) >= 10

        await wait_until(retried_while_down, within=60, what="rows retried while the EHR is down", workers=[worker])
        ehr.fault(status=503, count=40, retryAfter=1)
        proxy.up()
        outage = time.monotonic() - cut
        await wait_until(outbox.all_settled, within=120, what="every row settled", workers=[worker])
        recovered = time.monotonic() - cut - outage
        assert worker.stop() == 0
        counts = await outbox.counts()
    finally:
        if worker.exit_code() is None:
            worker.stop()
        await outbox.close()

    assert sorted(contacts_at_the_ehr(ehr)) == sorted(contacts)
    assert counts == {"done": len(contacts) + 1}  # no dead letters
    writes = encounter_writes(ehr)
    refused = [(n, w) for n, w in enumerate(writes) if w["status"] == 503]
    assert refused
    for n, w in refused:  # each was asked again only after the second the EHR asked for
        again = next(later for later in writes[n + 1 :] if later["path"] == w["path"])
        assert int(str(again["at"])) - int(str(w["at"])) >= 990, (w, again)
    report(
        f"EHR unreachable {outage:.1f} s then 40 x 503 Retry-After 1: all {len(contacts)} contacts delivered "
        f"{recovered:.1f} s after it came back, {len(refused)} Encounter writes deferred, none lost or doubled"
    )


async def test_tokens_that_expire_early_and_are_revoked_are_renewed_and_nothing_is_lost(
    app: FastAPI,
    client: httpx.AsyncClient,
    auth: Auth,
    settings: Settings,
    ehr: TestEhr,
    proxy: TcpProxy,
    tmp_path: Path,
) -> None:
    key = generate("EC")
    smart_ehr.register_client(ehr, CLIENT_ID, public_jwks(key, "faults-1"))
    # Tokens live 3 s but are announced for an hour: Peerway only learns of their end from a 401.
    smart_ehr.configure(ehr, require=True, token_ttl=3, announced_ttl=3600)
    contacts = await record_contacts(app, client, auth, 300)
    env = worker_env(
        settings,
        proxy.base_url(),
        ehr_token_url=smart_ehr.token_url(ehr),  # reached directly: only /fhir goes through the proxy
        ehr_client_id=CLIENT_ID,
        ehr_private_key_path=write_key(tmp_path, key, "pem"),
        ehr_key_id="faults-1",
    )
    outbox = Outbox(settings.database_url)
    worker = WorkerProcess(env, tmp_path / "worker.log")
    try:
        await wait_until(lambda: ehr.count("Encounter") >= 60, within=60, what="60 contacts", workers=[worker])
        # The worker keeps its token while the EHR is out of reach, and comes back with an expired one.
        proxy.down()
        await wait_until(lambda: smart_ehr.state(ehr)["active"] == 0, within=30, what="every token expired")
        proxy.up()
        await wait_until(lambda: ehr.count("Encounter") >= 150, within=60, what="150 contacts", workers=[worker])
        # The EHR revokes every token (with no request in flight, so no fresh token is revoked mid-retry).
        proxy.down()
        revoked = smart_ehr.revoke_all(ehr)
        proxy.up()
        await wait_until(outbox.all_settled, within=120, what="every row settled", workers=[worker])
        assert worker.stop() == 0
        counts = await outbox.counts()
    finally:
        if worker.exit_code() is None:
            worker.stop()
        await outbox.close()

    assert sorted(contacts_at_the_ehr(ehr)) == sorted(contacts)
    assert counts == {"done": len(contacts) + 1}  # no dead letters
    log = ehr.requests()
    unauthorized = [n for n, r in enumerate(log) if r["status"] == 401]
    assert unauthorized
    for n in unauthorized:  # the same request again, with a new token, and accepted
        retried = next(r for r in log[n + 1 :] if (r["method"], r["path"]) == (log[n]["method"], log[n]["path"]))
        assert retried["authorization"] != log[n]["authorization"]
        assert retried["status"] in (200, 201)
    state = smart_ehr.state(ehr)
    assert {r["status"] for r in state["requests"]} == {200}
    assert len({r["claims"]["jti"] for r in state["requests"]}) == len(state["requests"])
    report(
        f"SMART tokens (3 s life announced as 1 h, {revoked} revoked mid-run): {len(contacts)} contacts delivered, "
        f"{len(unauthorized)} x 401 each cured by one refresh, {state['issued']} tokens issued, no dead letter"
    )


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PEERWAY, *args], env=env, capture_output=True, text=True, timeout=60, check=False)


async def test_a_422_is_a_dead_letter_replayed_once_after_the_cause_is_fixed(
    app: FastAPI, client: httpx.AsyncClient, auth: Auth, settings: Settings, ehr: TestEhr, tmp_path: Path
) -> None:
    contacts = await record_contacts(app, client, auth, 20)
    ehr.fault(status=422, count=3)  # the EHR refuses the first three writes
    env = worker_env(settings, ehr.base_url)
    outbox = Outbox(settings.database_url)
    coordinator = auth(Role.COORDINATOR, "coord")
    worker = WorkerProcess(env, tmp_path / "worker.log")
    try:
        await wait_until(outbox.all_settled, within=60, what="every row settled", workers=[worker])
        dead = (await client.get("/api/outbox/dead", headers=coordinator)).json()
        assert len(dead) == 3
        for letter in dead:
            assert letter["http_status"] == 422
            assert letter["outcome"]["resourceType"] == "OperationOutcome"
            assert letter["outcome"]["issue"][0]["details"]["text"] == "Injected fault: HTTP 422"

        listed = cli(env, "dead-letters", "list")
        assert listed.returncode == 0, listed.stderr
        assert len(listed.stdout.splitlines()) == 3
        # The cause is fixed (the EHR accepts again): one replayed over the API, one with the CLI, one discarded.
        api_replay, cli_replay, discarded = dead
        assert (await client.post(f"/api/outbox/{api_replay['id']}/replay", headers=coordinator)).status_code == 200
        assert cli(env, "dead-letters", "replay", str(cli_replay["id"])).returncode == 0
        assert cli(env, "dead-letters", "discard", str(discarded["id"])).returncode == 0
        assert cli(env, "dead-letters", "replay", str(discarded["id"])).returncode == 1  # not a dead letter now
        await wait_until(outbox.all_settled, within=60, what="the replays delivered", workers=[worker])
        assert worker.stop() == 0
        counts = await outbox.counts()
    finally:
        if worker.exit_code() is None:
            worker.stop()
        await outbox.close()

    assert counts == {"done": len(contacts) + 1 - 1, "discarded": 1}
    at_the_ehr = contacts_at_the_ehr(ehr)
    assert len(at_the_ehr) == len(set(at_the_ehr))  # each once
    expected = set(contacts) - ({discarded["subject_id"]} if discarded["kind"] == "contact" else set())
    assert set(at_the_ehr) == expected
    assert (await client.get("/api/outbox/dead", headers=coordinator)).json() == []
