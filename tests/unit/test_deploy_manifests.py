"""The deployment examples work with this release: every PEERWAY_* variable the Kubernetes manifests and the
compose file set is a setting, the manifests' values (with real secrets in) are accepted in production, the API
processes run no jobs, and the probes ask paths the service answers. (The schemas themselves are checked by
kubernetes-validate in `make lint`, the compose file by `docker-compose config` in CI.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]

from service.main import create_app
from service.settings import Settings, unknown_variables

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"


def _documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _kind(kind: str, name: str) -> dict[str, Any]:
    found = [doc for path in sorted(K8S.glob("*.yaml")) for doc in _documents(path)]
    return next(doc for doc in found if doc["kind"] == kind and doc["metadata"]["name"] == name)


def test_the_manifests_settings_are_peerways_and_valid_in_production(tmp_path: Path) -> None:
    config = _kind("ConfigMap", "peerway")["data"]
    secret = _kind("Secret", "peerway")["stringData"]
    variables = {**config, **{k: v for k, v in secret.items() if k.startswith("PEERWAY_")}}
    assert unknown_variables(variables) == []
    real = variables | {
        "PEERWAY_JWT_SECRET": "a-real-secret-of-more-than-32-characters-0123",
        "PEERWAY_METRICS_TOKEN": "another-real-secret-of-32-characters-4567",
        "PEERWAY_DATABASE_URL": "postgresql+asyncpg://peerway:s3cret@postgres:5432/peerway",
        "PEERWAY_AUTH_KEYS_PATH": str(tmp_path / "auth-keys.json"),
    }
    fields = {name.removeprefix("PEERWAY_").lower(): value for name, value in real.items()}
    settings = Settings(**fields, _env_file=None)
    assert settings.env == "prod"


def test_api_pods_run_no_jobs_and_probe_paths_the_service_answers() -> None:
    paths = set(create_app(Settings(_env_file=None)).openapi()["paths"])
    api = _kind("Deployment", "peerway-api")["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "PEERWAY_RUN_WORKER", "value": "false"} in api["env"]
    assert api["args"] == ["serve"]
    assert api["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert api["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert {"/healthz", "/readyz"} <= paths
    worker = _kind("Deployment", "peerway-worker")["spec"]["template"]["spec"]["containers"][0]
    assert worker["args"] == ["worker"]
    assert _kind("Job", "peerway-migrate")["spec"]["template"]["spec"]["containers"][0]["args"] == ["migrate"]


def test_compose_sets_only_peerway_settings_and_keeps_jobs_out_of_the_api() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    for name in ("migrate", "api", "worker"):
        assert unknown_variables(services[name]["environment"]) == [], name
    assert services["api"]["environment"]["PEERWAY_RUN_WORKER"] == "false"
    assert services["worker"]["command"] == ["worker"]
