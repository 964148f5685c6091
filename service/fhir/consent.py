"""Wire -> consent engine: FHIR Consent JSON (R4, or R5-shaped) -> consent.model.ConsentRecord.

R4 documents are checked by fhir.resources (R4B, wire-compatible with R4 for Consent); R5-shaped ones
(`decision` at the top, untyped nested provisions, grantee...) would be rejected by those models and are
read by hand. Both end in the same ConsentRecord, read by the same code below.

Intake is strict where leniency could share data by mistake: every code the engine matches on needs a
system and a code, references need `Reference.reference`, and modifier extensions or R5 `expression`s,
which the engine cannot evaluate, are refused. The one leniency: an R4 Consent without `scope` whose
`category` carries consentscope#patient-privacy (the LEAP sample does this) is read as patient-privacy.
`Consent.identifier` (system and value) and `meta.lastUpdated` tell versions of one agreement apart.

Stored Consents are read here too, so this stays as lenient as is safe; what only recording refuses (R5
validation, codes unknown to their code system) is in consent_capture.py.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Literal

from fhir.resources.R4B.consent import Consent
from pydantic import ValidationError

from consent.categories import ASSIGNED_PEER_ROLE, CONSENT_SCOPE_SYSTEM, PATIENT_PRIVACY
from consent.model import ActorRule, Coding, ConsentRecord, Identifier, Period, Provision
from service.errors import InvalidResource
from service.fhir.dates import optional_instant
from service.fhir.labels import CANONICAL_SYSTEMS
from service.fhir.validation import fhirpath

__all__ = ["consent_status_of", "is_r5", "parse_consent", "refusal_from", "subject_element"]

R4_STATUSES = frozenset({"draft", "proposed", "active", "rejected", "inactive", "entered-in-error"})
R5_STATUSES = frozenset({"draft", "active", "inactive", "not-done", "entered-in-error", "unknown"})
_R5_ONLY = frozenset(
    {"decision", "subject", "date", "grantor", "grantee", "manager", "controller", "regulatoryBasis",
     "policyBasis", "policyText", "period"}
)  # fmt: skip
_R5_PROVISION_ONLY = frozenset({"documentType", "resourceType", "expression"})
_MEANINGS = frozenset({"instance", "related", "dependents", "authoredby"})
_MAX_DEPTH = 16
_LOCAL_REFERENCE = re.compile(r"(?:^|/)([A-Z][A-Za-z]+/[A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?$")

ProvisionType = Literal["permit", "deny"]


def consent_status_of(data: Mapping[str, Any]) -> str:
    """The status code of a Consent (R4 or R5-shaped), checked against that version's status codes."""
    _require_consent(data)
    return _status(data, R5_STATUSES if is_r5(data) else R4_STATUSES)


def parse_consent(data: Mapping[str, Any]) -> ConsentRecord:
    """Read a FHIR Consent (R4, or R5-shaped) into the consent engine's ConsentRecord.

    Raises InvalidResource naming the offending element (e.g. expression "Consent.provision.type").
    """
    _require_consent(data)
    return _parse_r5(data) if is_r5(data) else _parse_r4(data)


def subject_element(data: Mapping[str, Any]) -> Literal["patient", "subject"]:
    """The element naming the Consent's client: R4 `patient`, R5 `subject`."""
    return "subject" if is_r5(data) else "patient"


def _require_consent(data: Mapping[str, Any]) -> None:
    if not isinstance(data, Mapping) or data.get("resourceType") != "Consent":
        found = data.get("resourceType") if isinstance(data, Mapping) else type(data).__name__
        raise InvalidResource(f"expected a Consent resource, got {found!r}", expression="Consent.resourceType")


def is_r5(data: Mapping[str, Any]) -> bool:
    """Whether the Consent is R5-shaped (any R5-only element, or a list of provisions)."""
    if not _R5_ONLY.isdisjoint(data) or isinstance(data.get("provision"), list):
        return True
    provision = data.get("provision")
    while isinstance(provision, Mapping):
        if not _R5_PROVISION_ONLY.isdisjoint(provision):
            return True
        nested = provision.get("provision")
        provision = nested[0] if isinstance(nested, list) and nested else None
    return False


# --- R4 ------------------------------------------------------------------------------------------


def _parse_r4(data: Mapping[str, Any]) -> ConsentRecord:
    body = dict(data)
    if "scope" not in body and _has_privacy_category(body.get("category")):
        body["scope"] = {"coding": [{"system": CONSENT_SCOPE_SYSTEM, "code": PATIENT_PRIVACY}]}
    try:
        Consent.model_validate(body)
    except ValidationError as exc:
        raise refusal_from(exc) from None
    except (TypeError, ValueError) as exc:
        raise InvalidResource(f"Consent: {exc}", expression="Consent") from None
    status = _status(body, R4_STATUSES)
    _refuse_modifiers(body, "Consent")
    root = body.get("provision")
    return ConsentRecord(
        id=_consent_id(body),
        status=status,
        scope=_scope_code(body["scope"]),
        patient=_optional_reference(body.get("patient"), "Consent.patient"),
        date_time=optional_instant(body.get("dateTime"), "Consent.dateTime"),
        provision=None if root is None else _provision(root, "Consent.provision", None, r5=False, depth=0),
        identifiers=_identifiers(body),
        recorded_at=_recorded_at(body),
    )


def refusal_from(error: ValidationError) -> InvalidResource:
    """A fhir.resources validation failure of a Consent as InvalidResource naming the first element."""
    problems = []
    for problem in error.errors()[:3]:
        # pydantic adds "root" for RootModel wrappers and uses the Python name resource_type.
        loc = ["resourceType" if p == "resource_type" else p for p in problem["loc"] if p != "root"]
        problems.append((fhirpath("Consent", loc), problem["msg"]))
    return InvalidResource("; ".join(f"{path}: {msg}" for path, msg in problems), expression=problems[0][0])


def _has_privacy_category(categories: object) -> bool:
    if not isinstance(categories, list):
        return False
    for concept in categories:
        codings = concept.get("coding") if isinstance(concept, Mapping) else None
        for coding in codings if isinstance(codings, list) else ():
            if isinstance(coding, Mapping) and (coding.get("system"), coding.get("code")) == (
                CONSENT_SCOPE_SYSTEM,
                PATIENT_PRIVACY,
            ):
                return True
    return False


def _scope_code(scope: object) -> str | None:
    codings = scope.get("coding") if isinstance(scope, Mapping) else None
    if not isinstance(codings, list):
        return None
    for coding in codings:
        if isinstance(coding, Mapping) and coding.get("system") == CONSENT_SCOPE_SYSTEM:
            return str(coding.get("code"))
    # A scope from another code system is kept visibly foreign so it can never equal patient-privacy.
    first = codings[0] if codings and isinstance(codings[0], Mapping) else {}
    return f"{first.get('system')}#{first.get('code')}" if first else None


# --- R5 ------------------------------------------------------------------------------------------


def _parse_r5(data: Mapping[str, Any]) -> ConsentRecord:
    status = _status(data, R5_STATUSES)
    _refuse_modifiers(data, "Consent")
    decision = data.get("decision")
    if decision is not None and decision not in ("permit", "deny"):
        raise InvalidResource(f"decision must be permit or deny, got {decision!r}", expression="Consent.decision")
    nodes = data.get("provision")
    nodes = [nodes] if isinstance(nodes, Mapping) else _list(nodes, "Consent.provision")
    if decision is None and nodes:
        raise InvalidResource("an R5 Consent with provisions needs a decision", expression="Consent.decision")
    exception_type = _opposite(decision)
    children = tuple(
        _provision(node, f"Consent.provision[{i}]", exception_type, r5=True, depth=1) for i, node in enumerate(nodes)
    )
    grantees = tuple(
        ActorRule(None, _reference(g, f"Consent.grantee[{i}]"))
        for i, g in enumerate(_list(data.get("grantee"), "Consent.grantee"))
    )
    if "scope" in data:
        scope = _scope_code(data["scope"])
    else:
        scope = PATIENT_PRIVACY if _has_privacy_category(data.get("category")) else None
    subject = data.get("subject", data.get("patient"))
    when = data.get("date", data.get("dateTime"))
    return ConsentRecord(
        id=_consent_id(data),
        status=status,
        scope=scope,
        patient=_optional_reference(subject, "Consent.subject"),
        date_time=optional_instant(when, "Consent.date"),
        provision=Provision(
            type=decision,
            period=_optional_period(data.get("period"), "Consent.period"),
            actors=grantees,
            provisions=children,
        ),
        identifiers=_identifiers(data),
        recorded_at=_recorded_at(data),
    )


def _opposite(kind: ProvisionType | None) -> ProvisionType | None:
    if kind is None:
        return None
    return "deny" if kind == "permit" else "permit"


# --- provisions (both versions) ------------------------------------------------------------------


def _provision(node: object, path: str, implied: ProvisionType | None, *, r5: bool, depth: int) -> Provision:
    """One provision and its exceptions. R4 carries `type`; in R5 each level is the opposite of its parent."""
    if depth > _MAX_DEPTH:
        raise InvalidResource(f"provisions nest deeper than {_MAX_DEPTH} levels", expression=path)
    p = _object(node, path)
    _refuse_modifiers(p, path)
    kind: ProvisionType | None
    if r5:
        if "type" in p:
            raise InvalidResource("R5 provisions carry no type; use Consent.decision", expression=f"{path}.type")
        if "expression" in p:
            raise InvalidResource("Peerway cannot evaluate provision expressions", expression=f"{path}.expression")
        kind = implied
        classes = _codings(p, "resourceType", path) + _codings(p, "documentType", path)
    else:
        raw = p.get("type")
        if raw is not None and raw not in ("permit", "deny"):
            raise InvalidResource(f"type must be permit or deny, got {raw!r}", expression=f"{path}.type")
        kind = raw
        classes = _codings(p, "class", path)
    actors = tuple(
        rule for i, a in enumerate(_list(p.get("actor"), f"{path}.actor")) for rule in _actor(a, f"{path}.actor[{i}]")
    )
    nested = _list(p.get("provision"), f"{path}.provision")
    return Provision(
        type=kind,
        period=_optional_period(p.get("period"), f"{path}.period"),
        actors=actors,
        actions=_concept_codings(p, "action", path),
        purposes=_codings(p, "purpose", path),
        # A label named by OID or an old URI is the same label the EHR's data carry in canonical form.
        security_labels=tuple(
            Coding(CANONICAL_SYSTEMS.get(c.system, c.system), c.code) for c in _codings(p, "securityLabel", path)
        ),
        classes=classes,
        codes=_concept_codings(p, "code", path),
        data_period=_optional_period(p.get("dataPeriod"), f"{path}.dataPeriod"),
        data_refs=_data_refs(p, path, kind),
        provisions=tuple(
            _provision(child, f"{path}.provision[{i}]", _opposite(kind) if r5 else None, r5=r5, depth=depth + 1)
            for i, child in enumerate(nested)
        ),
    )


def _actor(node: object, path: str) -> list[ActorRule]:
    actor = _object(node, path)
    _refuse_modifiers(actor, path)
    roles = _concept(actor["role"], f"{path}.role") if actor.get("role") is not None else []
    if roles == [ASSIGNED_PEER_ROLE] and _names_no_one(actor.get("reference")):
        # R4 makes actor.reference 1..1, yet "whichever peer the program assigns" names no one in advance:
        # a Reference with only a display (or identifier) stands for the role. Only this role may do so;
        # any other actor without Reference.reference is refused, so no permit silently widens to a role.
        return [ActorRule(ASSIGNED_PEER_ROLE, None)]
    reference = _optional_reference(actor.get("reference"), f"{path}.reference")
    if reference is None and not roles:
        raise InvalidResource("an actor needs a role or a reference", expression=path)
    return [ActorRule(role, reference) for role in roles] if roles else [ActorRule(None, reference)]


def _data_refs(p: Mapping[str, Any], path: str, kind: ProvisionType | None) -> tuple[str, ...]:
    refs = []
    for i, node in enumerate(_list(p.get("data"), f"{path}.data")):
        data = _object(node, f"{path}.data[{i}]")
        meaning = data.get("meaning")
        if meaning not in _MEANINGS:
            raise InvalidResource(f"unknown data meaning {meaning!r}", expression=f"{path}.data[{i}].meaning")
        # A deny of related/dependent records reaches records Peerway cannot enumerate: refuse rather than
        # deny too little. A permit is read narrowly, as the listed records only.
        if meaning != "instance" and kind != "permit":
            raise InvalidResource(
                f"Peerway evaluates deny data.meaning 'instance' only, got {meaning!r}",
                expression=f"{path}.data[{i}].meaning",
            )
        refs.append(_reference(data.get("reference"), f"{path}.data[{i}].reference"))
    return tuple(refs)


# --- datatypes -----------------------------------------------------------------------------------


def _status(data: Mapping[str, Any], allowed: frozenset[str]) -> str:
    status = data.get("status")
    if not isinstance(status, str) or status not in allowed:
        raise InvalidResource(
            f"status must be one of {', '.join(sorted(allowed))}, got {status!r}", expression="Consent.status"
        )
    return status


def _consent_id(data: Mapping[str, Any]) -> str:
    """Consent.id; without one, the first identifier's value, so reasons can still name the consent."""
    if isinstance(data.get("id"), str):
        return str(data["id"])
    identifiers = data.get("identifier")
    if isinstance(identifiers, list):
        for identifier in identifiers:
            if isinstance(identifier, Mapping) and isinstance(identifier.get("value"), str):
                return str(identifier["value"])
    return ""


def _identifiers(data: Mapping[str, Any]) -> tuple[Identifier, ...]:
    """Consent.identifier entries with both system and value (the others cannot tie versions together)."""
    entries = data.get("identifier")
    return tuple(
        Identifier(e["system"], e["value"])
        for e in (entries if isinstance(entries, list) else ())
        if isinstance(e, Mapping) and all(isinstance(e.get(k), str) and e[k] for k in ("system", "value"))
    )


def _recorded_at(data: Mapping[str, Any]) -> datetime | None:
    """meta.lastUpdated: when this version was recorded (Peerway stamps it on every version it stores)."""
    meta = data.get("meta")
    if meta is None:
        return None
    return optional_instant(_object(meta, "Consent.meta").get("lastUpdated"), "Consent.meta.lastUpdated")


def _refuse_modifiers(node: Mapping[str, Any], path: str) -> None:
    if node.get("modifierExtension"):
        raise InvalidResource(
            "Peerway cannot evaluate modifier extensions on a Consent", expression=f"{path}.modifierExtension"
        )


def _object(node: object, path: str) -> Mapping[str, Any]:
    if not isinstance(node, Mapping):
        raise InvalidResource(f"expected a JSON object, got {type(node).__name__}", expression=path)
    return node


def _list(node: object, path: str) -> Sequence[Any]:
    if node is None:
        return []
    if not isinstance(node, list):
        raise InvalidResource(f"expected a JSON array, got {type(node).__name__}", expression=path)
    return node


def _coding(node: object, path: str) -> Coding:
    coding = _object(node, path)
    system, code = coding.get("system"), coding.get("code")
    if not isinstance(system, str) or not system or not isinstance(code, str) or not code:
        raise InvalidResource("Peerway matches codes by system and code; both are needed", expression=path)
    return Coding(system, code)


def _codings(p: Mapping[str, Any], name: str, path: str) -> tuple[Coding, ...]:
    return tuple(_coding(c, f"{path}.{name}[{i}]") for i, c in enumerate(_list(p.get(name), f"{path}.{name}")))


def _concept(node: object, path: str) -> list[Coding]:
    codings = _list(_object(node, path).get("coding"), f"{path}.coding")
    if not codings:
        raise InvalidResource("Peerway matches concepts by their codings; none given", expression=path)
    return [_coding(c, f"{path}.coding[{i}]") for i, c in enumerate(codings)]


def _concept_codings(p: Mapping[str, Any], name: str, path: str) -> tuple[Coding, ...]:
    concepts = _list(p.get(name), f"{path}.{name}")
    return tuple(coding for i, c in enumerate(concepts) for coding in _concept(c, f"{path}.{name}[{i}]"))


def _reference(node: object, path: str) -> str:
    reference = _object(node, path).get("reference")
    if not isinstance(reference, str) or not reference:
        raise InvalidResource("Peerway matches by Reference.reference; it is missing", expression=path)
    match = _LOCAL_REFERENCE.search(reference)
    return match.group(1) if match else reference


def _names_no_one(node: object) -> bool:
    return node is None or (isinstance(node, Mapping) and not node.get("reference"))


def _optional_reference(node: object, path: str) -> str | None:
    return None if node is None else _reference(node, path)


def _optional_period(node: object, path: str) -> Period | None:
    if node is None:
        return None
    period = _object(node, path)
    start = optional_instant(period.get("start"), f"{path}.start")
    end = optional_instant(period.get("end"), f"{path}.end", end=True)
    if start is not None and end is not None and end < start:
        raise InvalidResource(f"{path}: the period ends before it starts (per-01)", expression=path)
    return Period(start=start, end=end)
