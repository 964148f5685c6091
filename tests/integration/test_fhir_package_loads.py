"""The FHIR NPM package loads into a real FHIR server: the test EHR (Medplum's router and validator) reads
package/ as its profiles, then accepts the package's examples under their profiles and refuses one that breaks
a rule the package states — so the profiles it enforces came from the package."""

from __future__ import annotations

import copy
import json
import tarfile
from pathlib import Path
from typing import Any

import httpx

from fhir_profiles.package import build_package
from tests.support.ehr import run_test_ehr

FHIR_JSON = "application/fhir+json"


def unpacked(tmp_path: Path) -> Path:
    archive = build_package(tmp_path / "build")
    with tarfile.open(archive, "r:gz") as tar:
        tar.extractall(tmp_path / "unpacked", filter="data")
    return tmp_path / "unpacked" / "package"


def put(client: httpx.Client, resource: dict[str, Any]) -> httpx.Response:
    return client.put(f"/{resource['resourceType']}/{resource['id']}", content=json.dumps(resource))


def test_the_package_is_what_a_fhir_server_enforces(tmp_path: Path) -> None:
    package = unpacked(tmp_path)
    index = json.loads((package / "example" / ".index.json").read_text())
    examples = [json.loads((package / "example" / e["filename"]).read_text()) for e in index["files"]]
    assert {e["resourceType"] for e in examples} == {"Encounter", "Practitioner", "PractitionerRole"}
    with (
        run_test_ehr(profiles_dir=package) as ehr,
        httpx.Client(base_url=ehr.base_url, headers={"Content-Type": FHIR_JSON}, trust_env=False) as client,
    ):
        for example in examples:
            response = put(client, example)
            assert response.status_code == 201, response.text

        [role] = [e for e in examples if e["resourceType"] == "PractitionerRole"]
        assert role["meta"]["profile"]
        broken = copy.deepcopy(role)
        broken["id"] = "no-status"
        broken["extension"] = [x for x in role["extension"] if not x["url"].endswith("/peer-status")]
        refused = put(client, broken)
        assert refused.status_code == 400, refused.text
        [issue] = refused.json()["issue"]
        assert issue["expression"] == ["PractitionerRole.extension"]
        assert "slice 'status'" in issue["details"]["text"]  # the PeerSupporterRole slice, read from the package
        assert ehr.count("PractitionerRole") == 1
