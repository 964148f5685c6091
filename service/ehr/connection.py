"""How Peerway reaches one site's EHR, and what that EHR can take from it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

WriteMode = Literal["put", "conditional-create", "batch"]
WRITABLE_VERSIONS = ("4.0", "4.3")  # R4 and R4B read our R4 resources alike; R5 reshaped Encounter and CareTeam


@dataclass(frozen=True)
class SiteConnection:
    """How Peerway reaches one site's EHR (secrets by file path only)."""

    site: str
    fhir_base_url: str
    fhir_version: str  # 4.0.1 | 4.3.0 | 5.0.0
    write_mode: str  # put | conditional-create | batch
    token_url: str | None = None  # SMART Backend Services when set
    client_id: str | None = None
    private_key_path: str | None = None
    key_id: str | None = None
    scope: str | None = None
    bearer_token_path: str | None = None  # a static bearer token, read from this file, when there is no token_url
    bearer_token: str | None = field(default=None, repr=False)  # PEERWAY_EHR_BEARER_TOKEN (the settings' site)
    timeout_seconds: float = 10.0  # each request to the EHR and to its token endpoint
    token_refresh_margin_seconds: float = 60.0  # a SMART token is renewed this long before it expires

    @property
    def writes(self) -> WriteMode:
        """The write mode its EHR wants: PUT with our id (one request each, or contacts many to a FHIR batch), or a
        conditional create on our identifier."""
        if self.write_mode == "conditional-create":
            return "conditional-create"
        return "batch" if self.write_mode == "batch" else "put"


class UnsupportedFhirVersion(Exception):
    """Peerway builds R4 resources; an EHR speaking another major version cannot take them."""


def check_writable(version: str | None) -> None:
    """Refuse to write our R4 resources to an EHR that speaks another major FHIR version (R5)."""
    if version and ".".join(version.split(".")[:2]) not in WRITABLE_VERSIONS:
        raise UnsupportedFhirVersion(f"write-back speaks FHIR R4 (4.0.1); this EHR speaks {version}")
