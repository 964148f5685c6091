"""`make demo`: the whole path once, against the test EHR, printing what each party sees.

A Da Vinci admit and discharge come in, a coordinator registers and assigns a peer and records the client's
consent, the peer's app pulls the summary and records a contact, and the outbox worker writes it and the client's
CareTeam to the EHR. With KEEP=1 (`make demo KEEP=1`), Peerway then serves the demo's database on PEERWAY_PORT
and the EHR stays up on EHR_PORT, both until Ctrl-C, to look around with curl and `peerway token`.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

import fhir_profiles
from service.auth import Role, mint_token
from service.ehr.client import EhrClient
from service.main import create_app
from service.settings import Settings
from service.store.db import create_engine, session_factory
from service.store.migrate import upgrade
from service.workers.background import read_backgrounds
from service.workers.outbox import deliver_due
from tests.support.consents import peer_consent
from tests.support.ehr import run_test_ehr
from tests.support.flow import peer_contact
from tests.support.seed import seed_discharged_client

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "tests" / "fixtures" / "davinci"
SHARED = [
    "preferred-name",
    "contact-details",
    "admission-discharge",
    "upcoming-appointments",
    "recovery-goals",
    "safety-considerations",
    "community-supports",
]


def show(title: str, payload: Any = None) -> None:
    print(f"\n== {title}")
    if payload is not None:
        print(json.dumps(payload, indent=2))


async def walk(settings: Settings, ehr_base: str) -> None:
    app = create_app(settings)

    def as_(role: Role, sub: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {mint_token(settings, sub, role)}"}

    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=settings.base_url) as api,
    ):
        seed_discharged_client(ehr_base, datetime.now(UTC).date())
        show("The test EHR holds the client's appointments, goals, flags and supports (tests/ehr/seed)")
        for name in ("admit", "discharge"):
            bundle = json.loads((EXAMPLES / f"davinci-alerts-{name}-notification-message-bundle-01.json").read_text())
            answer = await api.post("/fhir/$process-message", json=bundle, headers=as_(Role.EHR_SYSTEM, "hospital"))
            show(f"EHR -> Peerway: Da Vinci {name} notification: {answer.status_code}", answer.json())
        [episode] = (await api.get("/api/episodes", headers=as_(Role.COORDINATOR, "coordinator"))).json()
        show("Coordinator sees the episode", episode)

        peer = (await api.post("/api/peers", json={"name": "Alex Morgan"}, headers=as_(Role.COORDINATOR, "c"))).json()
        await api.put(
            f"/api/episodes/{episode['id']}/peer", json={"peer_id": peer["id"]}, headers=as_(Role.COORDINATOR, "c")
        )
        show("Coordinator registers and assigns a peer supporter", peer)

        consent = peer_consent(episode["patient"], SHARED, actor=peer["practitioner"])
        stored = await api.post("/fhir/Consent", json=consent, headers=as_(Role.COORDINATOR, "c"))
        show(
            f"Coordinator records the client's consent (everything but diagnosis and notes): {stored.status_code}",
            stored.json()["provision"],
        )

        reader = EhrClient(ehr_base)
        try:
            read = await read_backgrounds(app.state.sessions, reader, settings)
        finally:
            await reader.aclose()
        show(f"The worker reads the client's background from the EHR: {read.done} job(s)")
        sharing = await api.get(f"/api/clients/{episode['client_id']}/sharing", headers=as_(Role.COORDINATOR, "c"))
        show(
            "Coordinator sees what was read and what the peer gets",
            [
                {k: c[k] for k in ("category", "shared", "items", "withheld_items", "reason")}
                for c in sharing.json()["categories"]
            ],
        )

        summary = await api.get(
            f"/fhir/Patient/{episode['client_id']}/$peer-summary", headers=as_(Role.PEER, peer["id"])
        )
        show(
            "The peer's app pulls the summary: what the client agreed to share, without the SUD-labelled appointment",
            summary.json(),
        )

        contact = await api.post(
            "/fhir/Encounter", json=peer_contact(episode["client_id"]), headers=as_(Role.PEER, peer["id"])
        )
        show(f"The peer records a one-hour community visit: {contact.status_code}", {"id": contact.json()["id"]})

    engine = create_engine(settings.database_url)
    ehr = EhrClient(ehr_base)
    try:
        report = await deliver_due(session_factory(engine), ehr, settings)
    finally:
        await ehr.aclose()
        await engine.dispose()
    show(f"Outbox worker: delivered {report.delivered}, retrying {report.retrying}, dead {report.dead}")
    async with httpx.AsyncClient() as http:
        found = (
            await http.get(
                f"{ehr_base}/Encounter",
                params={"identifier": f"{fhir_profiles.CONTACT_IDENTIFIER_SYSTEM}|{contact.json()['id']}"},
            )
        ).json()
    written = found["entry"][0]["resource"]
    show("The EHR now holds the peer's contact as an Encounter", written)
    async with httpx.AsyncClient() as http:
        teams = (await http.get(f"{ehr_base}/CareTeam", params={"subject": written["subject"]["reference"]})).json()
    [ours] = [
        e["resource"] for e in teams["entry"] if e["resource"].get("meta", {}).get("source") == fhir_profiles.CANONICAL
    ]
    show("... and the client's CareTeam, with the peer on it", ours)


def keep_serving(settings: Settings, ehr_base: str) -> None:
    """`peerway serve` on the demo's database, its worker writing to the same EHR, until Ctrl-C."""
    env = {
        **os.environ,
        "PEERWAY_ENV": "dev",
        "PEERWAY_DATABASE_URL": settings.database_url,
        "PEERWAY_EHR_BASE_URL": ehr_base,
    }
    server = subprocess.Popen([sys.executable, "-m", "service.cli", "serve"], cwd=ROOT, env=env)
    print(
        f"\n== KEEP=1: Peerway keeps serving the demo's data, the EHR at {ehr_base} keeps its own; Ctrl-C stops "
        "both.\n   Tokens: .venv/bin/peerway token --role coordinator (or --role peer --sub <peer id>)",
        flush=True,
    )
    try:
        server.wait()
    except KeyboardInterrupt:
        pass
    finally:
        if server.poll() is None:
            server.terminate()
        server.wait()


def main() -> None:
    keep = os.environ.get("KEEP", "") not in ("", "0")
    ehr_port = os.environ.get("EHR_PORT", "8103") if keep else "0"  # a kept EHR where the quick start looks
    with (
        tempfile.TemporaryDirectory() as tmp,
        run_test_ehr(profiles_dir=ROOT / "fhir_profiles" / "data", env={"EHR_PORT": ehr_port}) as ehr,
    ):
        database_url = f"sqlite+aiosqlite:///{tmp}/demo.db"
        upgrade(database_url)
        settings = Settings(
            env="dev", database_url=database_url, ehr_base_url=ehr.base_url, run_worker=False, _env_file=None
        )
        print(f"Test EHR (Medplum in-memory FHIR server) at {ehr.base_url}; Peerway in-process on SQLite")
        asyncio.run(walk(settings, ehr.base_url))
        if keep:
            keep_serving(settings, ehr.base_url)


if __name__ == "__main__":
    main()
