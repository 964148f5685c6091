"""`python -m fhir_profiles package` builds a FHIR NPM package other tools can load: package.json, each folder's
.index.json agreeing with its files, every file a valid R4 resource, every canonical it uses inside it."""

from __future__ import annotations

import importlib
import json
import re
import tarfile
from pathlib import Path

import pytest

import fhir_profiles
from fhir_profiles.__main__ import main
from fhir_profiles.package import build_package

OWN_CANONICAL = re.compile(
    re.escape(fhir_profiles.CANONICAL) + r"/(StructureDefinition|CodeSystem|ValueSet|OperationDefinition)/[\w.-]+"
)


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    out = tmp_path_factory.mktemp("build") / "fhir"
    assert main(["package", "--out", str(out)]) == 0
    [archive] = list(out.iterdir())
    assert archive.name == "peerway.fhir-0.1.0.tgz"
    with tarfile.open(archive, "r:gz") as tar:
        members = tar.getmembers()
        assert all(m.isfile() and m.name.startswith("package/") for m in members)
        return {m.name: tar.extractfile(m).read() for m in members}  # type: ignore[union-attr]


def test_the_manifest_names_the_package_and_its_fhir_version(package: dict[str, bytes]) -> None:
    manifest = json.loads(package["package/package.json"])
    assert manifest["name"] == "peerway.fhir"
    assert manifest["version"] == "0.1.0"
    assert manifest["canonical"] == fhir_profiles.CANONICAL
    assert manifest["fhirVersions"] == ["4.0.1"]
    assert manifest["dependencies"] == {"hl7.fhir.r4.core": "4.0.1"}


@pytest.mark.parametrize("folder", ["package", "package/example"])
def test_each_index_lists_exactly_its_folders_files(package: dict[str, bytes], folder: str) -> None:
    index = json.loads(package[f"{folder}/.index.json"])
    assert index["index-version"] == 2
    files = {
        name.removeprefix(f"{folder}/")
        for name in package
        if name.startswith(f"{folder}/") and "/" not in name.removeprefix(f"{folder}/")
    } - {".index.json", "package.json"}
    assert sorted(e["filename"] for e in index["files"]) == sorted(files)
    assert files
    for entry in index["files"]:
        resource = json.loads(package[f"{folder}/{entry['filename']}"])
        assert (entry["resourceType"], entry["id"]) == (resource["resourceType"], resource["id"])
        for field in ("url", "version", "kind", "type", "content", "supplements"):
            if isinstance(resource.get(field), str):
                assert entry[field] == resource[field], (entry["filename"], field)
            else:
                assert field not in entry, (entry["filename"], field)


def test_definitions_and_examples_are_apart_and_all_of_data_is_there(package: dict[str, bytes]) -> None:
    resources = {name: json.loads(data) for name, data in package.items() if not name.endswith("/.index.json")}
    resources.pop("package/package.json")
    assert len(resources) == len(fhir_profiles.artifacts())
    for name, resource in resources.items():
        kind = resource["resourceType"]
        in_example = name.startswith("package/example/")
        assert in_example == (kind in {"Encounter", "Practitioner", "PractitionerRole"}), name
        assert package[name] == fhir_profiles.artifact_bytes(kind, resource["id"])  # as stored
        model = getattr(importlib.import_module(f"fhir.resources.R4B.{kind.lower()}"), kind)
        model.model_validate(resource)


def test_every_canonical_of_ours_that_the_package_uses_is_in_it(package: dict[str, bytes]) -> None:
    index = json.loads(package["package/.index.json"])
    urls = {e["url"] for e in index["files"] if "url" in e}
    used: set[str] = set()
    for name, data in package.items():
        if name.endswith(".json") and not name.endswith("package.json"):
            used |= {m.group(0) for m in OWN_CANONICAL.finditer(data.decode())}
    assert used - urls == set()
    assert f"{fhir_profiles.CANONICAL}/OperationDefinition/peer-summary" in urls
    assert len(used) >= 20


def test_the_same_artifacts_give_the_same_archive(tmp_path: Path) -> None:
    first = build_package(tmp_path / "a").read_bytes()
    second = build_package(tmp_path / "b").read_bytes()
    assert first == second
