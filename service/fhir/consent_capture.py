"""What Peerway refuses when a Consent is recorded, beyond what parse_consent refuses.

parse_consent reads every Consent the engine can evaluate, including ones stored before these checks, so
it stays as lenient as it safely can. Recording is stricter: a Consent Peerway stores but cannot honour as
its sender meant is worse than a refusal the sender sees and can fix.
- R5 Consents are validated with the fhir.resources R5 models, as R4 ones are with R4B's: an element R5
  does not have (R4's `patient`, or `class` in a provision) would otherwise be read as if it were absent.
- A code from a code system whose codes Peerway knows in full must be one of them. A typo or a retired
  code matches nothing, so a deny naming it would deny nothing.

Every refusal is InvalidResource naming the element, e.g. `Consent.provision.provision[0].code[0].coding[0]`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import cache
from typing import Any

from fhir.resources import get_fhir_model_class as r5_model
from fhir.resources.consent import Consent as R5Consent
from fhir.resources.R4B import get_fhir_model_class as r4b_model
from fhir.resources.R4B.consent import Consent as R4BConsent
from fhir.resources.R4B.resource import Resource as R4BResource
from fhir.resources.resource import Resource as R5Resource
from pydantic import ValidationError

import fhir_profiles
from consent.categories import (
    CATEGORY_SYSTEM,
    CONFIDENTIALITY_SYSTEM,
    CONSENT_ACTION_SYSTEM,
    FHIR_TYPES_SYSTEM,
    PARTICIPANT_ROLE_SYSTEM,
    RESOURCE_TYPES_SYSTEM,
)
from service.errors import InvalidResource
from service.fhir.consent import is_r5, refusal_from
from service.fhir.validation import check_json_types

__all__ = ["CONFIDENTIALITY_LEVELS", "CONSENT_ACTIONS", "check_for_capture", "current_codes", "is_resource_type"]

# consentaction: R4 and R5 (terminology.hl7.org) define the same five codes.
CONSENT_ACTIONS = ("collect", "access", "use", "disclose", "correct")
CONFIDENTIALITY_LEVELS = ("U", "L", "M", "N", "R", "V")
# Abstract types name no resource anyone holds; the engine would match them against nothing.
_ABSTRACT_TYPES = frozenset({"Resource", "DomainResource", "CanonicalResource", "MetadataResource"})
# R4 (4.0.1) resource types that R4B, the version fhir.resources models for R4, no longer has.
_R4_ONLY_TYPES = frozenset(
    {"EffectEvidenceSynthesis", "MedicinalProduct", "MedicinalProductAuthorization",
     "MedicinalProductContraindication", "MedicinalProductIndication", "MedicinalProductIngredient",
     "MedicinalProductInteraction", "MedicinalProductManufactured", "MedicinalProductPackaged",
     "MedicinalProductPharmaceutical", "MedicinalProductUndesirableEffect", "RiskEvidenceSynthesis",
     "SubstanceNucleicAcid", "SubstancePolymer", "SubstanceProtein", "SubstanceReferenceInformation",
     "SubstanceSourceMaterial", "SubstanceSpecification"}
)  # fmt: skip
# R4 element names R5 renamed, for a hint when an R5 Consent carries one.
_R5_NAMES = {"patient": "subject", "dateTime": "date", "class": "resourceType", "scope": "category"}


@cache
def current_codes(system: str) -> tuple[str, ...]:
    """The codes of one of Peerway's CodeSystems a Consent may name today (not marked retired or inactive)."""
    return tuple(
        code
        for code in sorted(fhir_profiles.codes(system))
        if fhir_profiles.concept_property(system, code, "status") not in ("retired", "deprecated")
        and fhir_profiles.concept_property(system, code, "inactive") is not True
    )


# Code systems whose codes are all known here: (what their codes are, the codes).
_CLOSED_SYSTEMS: dict[str, tuple[str, Callable[[], Sequence[str]]]] = {
    CATEGORY_SYSTEM: ("a Peerway data category", lambda: current_codes(CATEGORY_SYSTEM)),
    PARTICIPANT_ROLE_SYSTEM: ("a Peerway participant role", lambda: current_codes(PARTICIPANT_ROLE_SYSTEM)),
    CONSENT_ACTION_SYSTEM: ("a consent action", lambda: CONSENT_ACTIONS),
    CONFIDENTIALITY_SYSTEM: ("a confidentiality level", lambda: CONFIDENTIALITY_LEVELS),
}
_CODING_ELEMENTS = ("purpose", "securityLabel", "class", "resourceType", "documentType")
_CONCEPT_ELEMENTS = ("action", "code")


def check_json_types_of_consent(data: Mapping[str, Any]) -> None:
    """Refuse (400, naming the element, not echoing the value) a primitive in another JSON type than FHIR JSON's:
    a number for a period's start, which would otherwise be read as seconds since 1970, "true" for a boolean."""
    check_json_types(R5Consent if is_r5(data) else R4BConsent, data, "Consent")


def check_for_capture(data: Mapping[str, Any]) -> None:
    """Refuse a Consent that parse_consent reads but the engine could not honour as its sender meant.

    Call after parse_consent succeeded (which has checked the shapes this walks). Raises InvalidResource
    naming the element.
    """
    if is_r5(data):
        _validate_r5(data)
        for i, node in enumerate(_items(data.get("provision"))):
            _check_provision(node, f"Consent.provision[{i}]")
    elif isinstance(data.get("provision"), Mapping):
        _check_provision(data["provision"], "Consent.provision")


def is_resource_type(code: str, system: str) -> bool:
    """Whether `code` names a concrete FHIR resource type: an R4 one for resource-types, R5 for fhir-types."""
    if code in _ABSTRACT_TYPES:
        return False
    if system == RESOURCE_TYPES_SYSTEM:
        return code in _R4_ONLY_TYPES or _names_model(r4b_model, R4BResource, code)
    return system == FHIR_TYPES_SYSTEM and _names_model(r5_model, R5Resource, code)


def _names_model(model_of: Callable[[str], type], base: type, code: str) -> bool:
    try:
        model = model_of(code)  # imports that one model's module; fhir.resources caches it
    except (ValueError, ImportError, AttributeError):
        return False
    return issubclass(model, base) and model.__name__ == code


def _validate_r5(data: Mapping[str, Any]) -> None:
    try:
        R5Consent.model_validate(data)
    except ValidationError as exc:
        refusal = refusal_from(exc)
        element = (refusal.expression or "").rpartition(".")[2]
        if element in _R5_NAMES and exc.errors()[0]["type"] == "extra_forbidden":
            hint = f" ({element} is R4's element; an R5 Consent uses {_R5_NAMES[element]})"
            refusal = InvalidResource(refusal.diagnostics + hint, refusal.expression)
        raise refusal from None
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        raise InvalidResource(f"Consent could not be read as FHIR R5 ({type(exc).__name__})", "Consent") from None


def _items(node: object) -> Iterable[Any]:
    return node if isinstance(node, list) else ()


def _mappings(node: object) -> Iterable[tuple[int, Mapping[str, Any]]]:
    return ((i, item) for i, item in enumerate(_items(node)) if isinstance(item, Mapping))


def _check_provision(node: object, path: str) -> None:
    if not isinstance(node, Mapping):
        return
    for name in _CODING_ELEMENTS:
        for i, coding in _mappings(node.get(name)):
            if name != "purpose" and coding.get("system") == CATEGORY_SYSTEM:
                # Data categories are matched in provision.code only: here one would match nothing.
                raise InvalidResource(
                    f"name Peerway data categories in {path}.code, not in {name}", expression=f"{path}.{name}[{i}]"
                )
            _check_coding(coding, f"{path}.{name}[{i}]")
    for name in _CONCEPT_ELEMENTS:
        for i, concept in _mappings(node.get(name)):
            for j, coding in _mappings(concept.get("coding")):
                _check_coding(coding, f"{path}.{name}[{i}].coding[{j}]")
    for i, actor in _mappings(node.get("actor")):
        role = actor.get("role")
        for j, coding in _mappings(role.get("coding") if isinstance(role, Mapping) else None):
            _check_coding(coding, f"{path}.actor[{i}].role.coding[{j}]")
    for i, child in _mappings(node.get("provision")):
        _check_provision(child, f"{path}.provision[{i}]")


def _check_coding(coding: Mapping[str, Any], path: str) -> None:
    system, code = coding.get("system"), coding.get("code")
    if not isinstance(system, str) or not isinstance(code, str):
        return  # parse_consent has refused these already
    if system in (RESOURCE_TYPES_SYSTEM, FHIR_TYPES_SYSTEM):
        if not is_resource_type(code, system):
            version = "R4" if system == RESOURCE_TYPES_SYSTEM else "R5"
            raise _unknown(code, f"the name of a FHIR {version} resource type", system, path)
        return
    closed = _CLOSED_SYSTEMS.get(system)
    if closed is not None and code not in closed[1]():
        raise _unknown(code, closed[0], system, path, closed[1]())


def _unknown(code: str, what: str, system: str, path: str, known: Sequence[str] = ()) -> InvalidResource:
    listed = f" ({', '.join(known)})" if known else ""
    return InvalidResource(
        f"{code!r} is not {what} in {system}{listed}: a provision naming it would match nothing", expression=path
    )
