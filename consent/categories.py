"""The vocabulary of consent: Peerway's data categories and the HL7 codes the engine understands.

Peerway asks one question of a consent: may this peer supporter see this category of a client's data?
The categories are the need-to-know summary the TDM study describes (see ../shared/domain/README.md).
"""

from __future__ import annotations

from enum import StrEnum

from consent.coding import Coding

__all__ = [
    "ACTION_ACCESS",
    "ACTION_DISCLOSE",
    "ACT_CODE_SYSTEM",
    "ACT_REASON_SYSTEM",
    "ASSIGNED_PEER_ROLE",
    "CATEGORY_SYSTEM",
    "CONFIDENTIALITY_SYSTEM",
    "CONSENT_ACTION_SYSTEM",
    "CONSENT_SCOPE_SYSTEM",
    "EXPLICIT_ONLY",
    "FHIR_TYPES_SYSTEM",
    "LABEL_NAMES",
    "PARTICIPANT_ROLE_SYSTEM",
    "PARTICIPATION_TYPE_SYSTEM",
    "PATIENT_PRIVACY",
    "PURPOSE_COC",
    "PURPOSE_PARENTS",
    "PURPOSE_TREAT",
    "RESOURCE_TYPES_SYSTEM",
    "RESOURCE_TYPE_SYSTEMS",
    "RESTRICTIVE",
    "ROLE_IRCP",
    "DataCategory",
    "category_coding",
    "confidentiality_rank",
    "label_name",
]

CATEGORY_SYSTEM = "https://peerway.github.io/fhir/CodeSystem/data-category"
PARTICIPANT_ROLE_SYSTEM = "https://peerway.github.io/fhir/CodeSystem/participant-role"
PARTICIPATION_TYPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
CONSENT_ACTION_SYSTEM = "http://terminology.hl7.org/CodeSystem/consentaction"
CONSENT_SCOPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/consentscope"
ACT_REASON_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
CONFIDENTIALITY_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
ACT_CODE_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
RESOURCE_TYPES_SYSTEM = "http://hl7.org/fhir/resource-types"  # R4's name for resource types
FHIR_TYPES_SYSTEM = "http://hl7.org/fhir/fhir-types"  # R5's name for the same codes
RESOURCE_TYPE_SYSTEMS = frozenset({RESOURCE_TYPES_SYSTEM, FHIR_TYPES_SYSTEM})
"""Code systems whose codes name FHIR resource types (`provision.class` in R4, `provision.resourceType` in R5)."""

PATIENT_PRIVACY = "patient-privacy"
"""The only Consent scope (consentscope) the engine uses to share data."""


class DataCategory(StrEnum):
    """What a client may choose to share with their peer supporter (codes of CATEGORY_SYSTEM)."""

    PREFERRED_NAME = "preferred-name"  # preferred name and pronouns
    CONTACT_DETAILS = "contact-details"  # phone, email, address
    ADMISSION_DISCHARGE = "admission-discharge"  # admission/discharge dates, unit, discharge disposition
    UPCOMING_APPOINTMENTS = "upcoming-appointments"
    RECOVERY_GOALS = "recovery-goals"
    INTERESTS = "interests"
    SAFETY_CONSIDERATIONS = "safety-considerations"
    COMMUNITY_SUPPORTS = "community-supports"
    DIAGNOSIS = "diagnosis"
    CLINICAL_NOTES = "clinical-notes"


EXPLICIT_ONLY: frozenset[DataCategory] = frozenset({DataCategory.DIAGNOSIS, DataCategory.CLINICAL_NOTES})
"""Shared only under a permit whose `code` names the category; a permit without codes never covers them."""

_CATEGORY_CODINGS = {category: Coding(CATEGORY_SYSTEM, category.value) for category in DataCategory}


def category_coding(category: DataCategory) -> Coding:
    """The Coding that names `category` in a Consent provision's `code`."""
    return _CATEGORY_CODINGS[category]


# Who asks: the role Peerway's service puts into AccessRequest.actor_roles for the client's own peer,
# and the HL7 "information recipient" role consents use for the party receiving data.
ASSIGNED_PEER_ROLE = Coding(PARTICIPANT_ROLE_SYSTEM, "assigned-peer-supporter")
ROLE_IRCP = Coding(PARTICIPATION_TYPE_SYSTEM, "IRCP")

ACTION_ACCESS = Coding(CONSENT_ACTION_SYSTEM, "access")
ACTION_DISCLOSE = Coding(CONSENT_ACTION_SYSTEM, "disclose")

PURPOSE_COC = Coding(ACT_REASON_SYSTEM, "COC")  # coordination of care: what a peer supporter does
PURPOSE_TREAT = Coding(ACT_REASON_SYSTEM, "TREAT")

PURPOSE_PARENTS: dict[Coding, Coding] = {
    PURPOSE_COC: PURPOSE_TREAT,
    Coding(ACT_REASON_SYSTEM, "ETREAT"): PURPOSE_TREAT,
}
"""The part of the v3-ActReason hierarchy the engine knows. Only denies use it (a deny for TREAT also catches
COC); a permit must name the request's purpose exactly, so a doubt about the hierarchy never widens sharing."""

_CONFIDENTIALITY_NAMES = {
    "R": "restricted",
    "V": "very restricted",
}
# v3-ActCode: the information sensitivity kinds (ActInformationSensitivityPolicy) that a mental-health
# program must not pass on under a general permit, and the privacy laws that protect data by themselves.
_SENSITIVITY_NAMES = {
    "BH": "behavioral health",
    "COGN": "cognitive disability",
    "DVD": "developmental disability",
    "EMOTDIS": "emotional disturbance",
    "ETH": "substance abuse",
    "ETHUD": "alcohol use disorder",
    "GDIS": "genetic disease",
    "HIV": "HIV/AIDS",
    "MH": "mental health",
    "MST": "military sexual trauma",
    "OPIOIDUD": "opioid use disorder",
    "PREGNANT": "pregnancy",
    "PSY": "psychiatry",
    "PSYTHPN": "psychotherapy note",
    "SCA": "sickle cell anemia",
    "SDV": "sexual assault, abuse or domestic violence",
    "SEX": "sexuality and reproductive health",
    "SICKLE": "sickle cell",
    "SOC": "social services",
    "SPI": "specially protected",
    "STD": "sexually transmitted disease",
    "SUD": "substance use disorder",
    "TBOO": "taboo",
    "VIO": "violence",
    "42CFRPart2": "42 CFR Part 2",
    "HIPAAPsyNotes": "HIPAA psychotherapy notes",
    "Title38Section7332": "Title 38 Section 7332",
}

RESTRICTIVE: frozenset[Coding] = frozenset(
    {Coding(CONFIDENTIALITY_SYSTEM, code) for code in _CONFIDENTIALITY_NAMES}
    | {Coding(ACT_CODE_SYSTEM, code) for code in _SENSITIVITY_NAMES}
)
"""Security labels that data may carry only to a recipient whose permit names every one of them."""

LABEL_NAMES: dict[Coding, str] = {
    **{Coding(CONFIDENTIALITY_SYSTEM, c): n for c, n in _CONFIDENTIALITY_NAMES.items()},
    **{Coding(ACT_CODE_SYSTEM, c): n for c, n in _SENSITIVITY_NAMES.items()},
}

# v3-Confidentiality is ordered: a deny of R data also catches V data.
_CONFIDENTIALITY_RANKS = {"U": 0, "L": 1, "M": 2, "N": 3, "R": 4, "V": 5}


def confidentiality_rank(label: Coding) -> int | None:
    """The rank of a v3-Confidentiality label (U=0 ... V=5), None for any other label."""
    if label.system != CONFIDENTIALITY_SYSTEM:
        return None
    return _CONFIDENTIALITY_RANKS.get(label.code)


def label_name(label: Coding) -> str:
    """Plain words for a security label, e.g. "restricted (R)", for reasons a coordinator reads."""
    name = LABEL_NAMES.get(label)
    return f"{name} ({label.code})" if name else label.code
