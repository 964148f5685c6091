"""Peerway's artifacts as a FHIR NPM package (https://hl7.org/fhir/packages.html): a .tgz holding
package/package.json, the conformance resources with package/.index.json, and the examples in package/example/
with their own .index.json. Validators, IG tooling and servers load packages in this form.
"""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path
from typing import Any

from fhir_profiles.registry import CANONICAL, artifact_bytes, artifacts

NAME = "peerway.fhir"
VERSION = "0.1.0"
FHIR_VERSION = "4.0.1"
# Definitions go in package/; anything else is an instance (an example) and goes in package/example/.
DEFINITION_TYPES = frozenset(
    {
        "StructureDefinition",
        "CodeSystem",
        "ValueSet",
        "OperationDefinition",
        "SearchParameter",
        "NamingSystem",
        "Measure",
        "Questionnaire",
    }
)
# Kept in the index when the resource has them (the package spec's index-version 2 fields).
INDEX_FIELDS = ("url", "version", "kind", "type", "supplements", "content")
# Fixed file times, so the same artifacts always give the same archive, byte for byte.
_MTIME = 1_764_460_800  # 2025-11-30T00:00:00Z


def manifest() -> dict[str, Any]:
    """package/package.json."""
    return {
        "name": NAME,
        "version": VERSION,
        "canonical": CANONICAL,
        "url": CANONICAL,
        "title": "Peerway FHIR artifacts",
        "description": "Profiles, extensions, code systems, value sets and operations of Peerway, the FHIR "
        "integration service for peer-support programs after psychiatric discharge.",
        "fhirVersions": [FHIR_VERSION],
        "dependencies": {"hl7.fhir.r4.core": FHIR_VERSION},
        "author": "Peerway",
        "license": "Apache-2.0",
        "type": "Conformance",
    }


def index_entry(filename: str, resource: dict[str, Any]) -> dict[str, Any]:
    entry: dict[str, Any] = {"filename": filename, "resourceType": resource["resourceType"], "id": resource["id"]}
    # Only the string fields: an example's `type` (say an Encounter's CodeableConcepts) is not the index's `type`.
    entry |= {field: resource[field] for field in INDEX_FIELDS if isinstance(resource.get(field), str)}
    return entry


def package_files() -> dict[str, bytes]:
    """Every path in the archive and its bytes (the artifacts exactly as stored in fhir_profiles/data)."""
    files: dict[str, bytes] = {"package/package.json": _json(manifest())}
    indexes: dict[str, list[dict[str, Any]]] = {"package": [], "package/example": []}
    for resource in artifacts():
        folder = "package" if resource["resourceType"] in DEFINITION_TYPES else "package/example"
        filename = f"{resource['resourceType']}-{resource['id']}.json"
        files[f"{folder}/{filename}"] = artifact_bytes(resource["resourceType"], resource["id"])
        indexes[folder].append(index_entry(filename, resource))
    for folder, entries in indexes.items():
        files[f"{folder}/.index.json"] = _json({"index-version": 2, "files": entries})
    return files


def build_package(out_dir: Path) -> Path:
    """Write <out_dir>/peerway.fhir-<version>.tgz and return its path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{NAME}-{VERSION}.tgz"
    buffer = io.BytesIO()
    # mtime=0 in the gzip header too: the archive depends on the artifacts only.
    with (
        gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as zipped,
        tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT) as archive,
    ):
        for path, data in sorted(package_files().items()):
            info = tarfile.TarInfo(path)
            info.size = len(data)
            info.mtime = _MTIME
            info.mode = 0o644
            archive.addfile(info, io.BytesIO(data))
    target.write_bytes(buffer.getvalue())
    return target


def _json(value: dict[str, Any]) -> bytes:
    return (json.dumps(value, indent=2, ensure_ascii=False) + "\n").encode()
