"""Who is calling: a person (signed in with their organization's OpenID Connect provider and registered in
Peerway) or a system (an EHR or peer-organization back end holding a Peerway token), and what it may do."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    EHR_SYSTEM = "ehr-system"  # a hospital's EHR (SMART Backend Services), acting for its site
    COORDINATOR = "coordinator"  # a hospital's (site's) coordinator: that site's clients only
    ORGANIZATION_COORDINATOR = "organization-coordinator"  # a peer organization's: its own peers' caseloads only
    PEER = "peer"
    ADMINISTRATOR = "administrator"  # registers issuers, coordinators and systems; sees no client


@dataclass(frozen=True)
class Principal:
    subject: str  # a peer's principal carries the peer supporter's id here; a system's, its client_id
    role: Role
    site: str  # the hospital an ehr-system or coordinator acts for
    organization: str | None = None  # the peer organization of an organization coordinator (person or system)
    scopes: frozenset[str] | None = None  # a system's granted SMART scopes; None: a person (not scope-limited)
    person_id: str | None = None  # the registry row of a person

    @property
    def is_system(self) -> bool:
        return self.scopes is not None
