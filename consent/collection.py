"""Collect no more than is needed: which data categories some consent of a client could ever release.

Peerway fetches a category from the EHR only while this says so, and deletes what it holds of a category once it
no longer does. It reads consents generously (it ignores who, for what purpose and any deny), because it answers
"might anyone be shown this?", not "may this peer see it?" (that is `evaluate`, asked on every read).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from consent.categories import CATEGORY_SYSTEM, EXPLICIT_ONLY, PATIENT_PRIVACY, RESOURCE_TYPE_SYSTEMS, DataCategory
from consent.engine import current_versions
from consent.model import ConsentRecord, Provision

__all__ = ["releasable"]


def releasable(
    consents: Sequence[ConsentRecord], patient: str, at: datetime, sources: Mapping[DataCategory, str]
) -> frozenset[DataCategory]:
    """The categories that a permit of a current, active patient-privacy consent about `patient`, in force at
    `at`, could release. `sources` names the resource type holding each category (for permits by `class`).

    Diagnosis and clinical notes count only where a permit names them by code (rule 4 of consent/README.md).
    """
    found: set[DataCategory] = set()
    for consent in current_versions(consents):
        if consent.status != "active" or consent.scope != PATIENT_PRIVACY or consent.patient != patient:
            continue
        if consent.provision is not None:
            found |= _permitted(consent.provision, at, sources)
    return frozenset(found)


def _permitted(provision: Provision, at: datetime, sources: Mapping[DataCategory, str]) -> set[DataCategory]:
    if provision.period is not None and not provision.period.contains(at):
        return set()  # nested provisions apply only within their parent's period
    found: set[DataCategory] = set()
    if provision.type == "permit":
        found |= _covered(provision, sources)
    for nested in provision.provisions:
        found |= _permitted(nested, at, sources)
    return found


def _covered(provision: Provision, sources: Mapping[DataCategory, str]) -> set[DataCategory]:
    named = {DataCategory(c.code) for c in provision.codes if c.system == CATEGORY_SYSTEM and c.code in _VALUES}
    if provision.codes:
        return named  # codes of other systems name nothing Peerway can fetch for
    candidates = set(DataCategory) - EXPLICIT_ONLY
    types = {c.code for c in provision.classes if c.system in RESOURCE_TYPE_SYSTEMS}
    if provision.classes:
        return {c for c in candidates if sources.get(c) in types}
    return candidates


_VALUES = frozenset(c.value for c in DataCategory)
