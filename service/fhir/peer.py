"""A peer supporter's profile as FHIR: a Practitioner (who they are) and a PractitionerRole (their place in the
program: status, interests, neighbourhood, hours, caseload cap, kinds of support, their own preferences).

Peerway stores these two resources and reads matching data back from them with `profile_from`, by hand:
the JSON is our own build, so the hot path pays no model validation.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Any

import fhir_profiles as fp
from service.domain.matching import PeerProfile
from service.domain.vocabulary import PeerStatus, SupportKind

BCP47 = "urn:ietf:bcp:47"


def _ext(url: str, **value: Any) -> dict[str, Any]:
    return {"url": url, **value}


def practitioner(profile: PeerProfile, version: int) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Practitioner",
        "id": profile.peer_id,
        "meta": {"versionId": str(version)},
        "identifier": [{"system": fp.PEER_IDENTIFIER_SYSTEM, "value": profile.peer_id}],
        "active": profile.status is not PeerStatus.INACTIVE,
        "name": [{"text": profile.name}],
    }
    if profile.age_band:
        resource["extension"] = [_ext(fp.EXT_AGE_BAND, valueCode=profile.age_band)]
    if profile.gender:
        resource["gender"] = profile.gender
    if profile.languages:
        resource["communication"] = [
            {"coding": [{"system": BCP47, "code": code}]} for code in sorted(profile.languages)
        ]
    return resource


def practitioner_role(profile: PeerProfile, version: int) -> dict[str, Any]:
    extensions = [_ext(fp.EXT_PEER_STATUS, valueCode=profile.status.value)]
    extensions += [_ext(fp.EXT_INTEREST, valueString=interest) for interest in profile.interests]
    if profile.neighbourhood:
        extensions.append(_ext(fp.EXT_NEIGHBOURHOOD, valueString=profile.neighbourhood))
    if profile.weekly_hours is not None:
        extensions.append(_ext(fp.EXT_WEEKLY_HOURS, valueDecimal=profile.weekly_hours))
    extensions.append(_ext(fp.EXT_CASELOAD_CAP, valuePositiveInt=profile.caseload_cap))
    preference: list[dict[str, Any]] = []
    if profile.client_min_age is not None:
        preference.append(_ext("min-age", valueInteger=profile.client_min_age))
    if profile.client_max_age is not None:
        preference.append(_ext("max-age", valueInteger=profile.client_max_age))
    preference += [_ext("gender", valueCode=g) for g in sorted(profile.client_genders)]
    if preference:
        extensions.append({"url": fp.EXT_CLIENT_PREFERENCE, "extension": preference})
    role: dict[str, Any] = {
        "resourceType": "PractitionerRole",
        "id": profile.peer_id,
        "meta": {"versionId": str(version), "profile": [fp.PEER_SUPPORTER_ROLE_PROFILE]},
        "extension": extensions,
        "identifier": [{"system": fp.PEER_IDENTIFIER_SYSTEM, "value": profile.peer_id}],
        "active": profile.status is PeerStatus.ACTIVE,
        "practitioner": {"reference": f"Practitioner/{profile.peer_id}", "display": profile.name},
        "code": [{"coding": [{"system": fp.PARTICIPANT_ROLE_SYSTEM, "code": "peer-supporter"}]}],
    }
    if profile.support_kinds:
        role["specialty"] = [
            {"coding": [{"system": fp.SUPPORT_KIND_SYSTEM, "code": kind.value}]}
            for kind in sorted(profile.support_kinds)
        ]
    return role


def _values(extensions: Iterable[dict[str, Any]], url: str, key: str) -> list[Any]:
    return [e[key] for e in extensions if e.get("url") == url and key in e]


def profile_from(practitioner_json: dict[str, Any], role_json: dict[str, Any]) -> PeerProfile:
    """The matching view of a stored Practitioner + PractitionerRole pair (both built by this module)."""
    role_ext = role_json.get("extension") or []
    preference = next((e.get("extension") or [] for e in role_ext if e.get("url") == fp.EXT_CLIENT_PREFERENCE), [])
    min_age = _values(preference, "min-age", "valueInteger")
    max_age = _values(preference, "max-age", "valueInteger")
    hours = _values(role_ext, fp.EXT_WEEKLY_HOURS, "valueDecimal")
    neighbourhood = _values(role_ext, fp.EXT_NEIGHBOURHOOD, "valueString")
    age_band = _values(practitioner_json.get("extension") or [], fp.EXT_AGE_BAND, "valueCode")
    return PeerProfile(
        peer_id=str(role_json["id"]),
        name=str(role_json["practitioner"]["display"]),
        status=PeerStatus(_values(role_ext, fp.EXT_PEER_STATUS, "valueCode")[0]),
        gender=practitioner_json.get("gender"),
        age_band=age_band[0] if age_band else None,
        languages=frozenset(
            c["code"] for comm in practitioner_json.get("communication") or [] for c in comm.get("coding") or []
        ),
        interests=tuple(_values(role_ext, fp.EXT_INTEREST, "valueString")),
        neighbourhood=neighbourhood[0] if neighbourhood else None,
        weekly_hours=float(Decimal(str(hours[0]))) if hours else None,
        caseload_cap=int(_values(role_ext, fp.EXT_CASELOAD_CAP, "valuePositiveInt")[0]),
        support_kinds=frozenset(
            SupportKind(c["code"]) for s in role_json.get("specialty") or [] for c in s.get("coding") or []
        ),
        client_min_age=min_age[0] if min_age else None,
        client_max_age=max_age[0] if max_age else None,
        client_genders=frozenset(_values(preference, "gender", "valueCode")),
    )
