"""Check a resource (FHIR JSON) against the differential of one of our profiles.

What the differential states is checked: cardinality (min/max given there), fixed[x] and pattern[x]
values, required bindings to our own ValueSets, Reference targets, the types allowed for a choice
element (value[x]), and slices told apart by a fixed or pattern value: of a child (identifier:peerway by
system), of the element itself ($this, code:peerSupporter), or by url for extension slices, taken from the
slice's extension profile when the differential does not fix it. A slice member typed by one of our
Extension profiles is checked against that profile too, sub-extensions included; so can an extension be,
on its own: check_conformance(extension, EXT_PEER_STATUS).

The base resource's own rules are left to the fhir.resources model, and FHIRPath invariants (such as
peer-contact's pwc-1 or peer-client-preference's pwp-1) are left to a full validator.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fhir_profiles.registry import _resource_at, valueset_codes

_CORE = "http://hl7.org/fhir/StructureDefinition/"

# (FHIRPath-like location, value found there)
_Node = tuple[str, Any]


@dataclass(frozen=True)
class Problem:
    """One way a resource departs from a profile; `expression` suits OperationOutcome.issue.expression."""

    expression: str
    message: str


def check_conformance(resource: Mapping[str, Any], profile_url: str) -> list[Problem]:
    """Every way `resource` departs from the differential of our profile `profile_url` (empty: conforms).

    `profile_url` may name one of our Extension definitions; `resource` is then an extension (a JSON
    object with `url`), and problems are reported from `Extension`.
    """
    profile = _resource_at(profile_url, "StructureDefinition")
    root = profile["type"]
    if root == "Extension":
        if "resourceType" in resource:
            return [Problem(root, f"expected an Extension, got a {resource['resourceType']}")]
    elif resource.get("resourceType") != root:
        return [Problem(root, f"expected a {root}, got {resource.get('resourceType')!r}")]
    return _check_profile(resource, profile, root, "")


def _check_profile(value: Mapping[str, Any], profile: Mapping[str, Any], at: str, prefix: str) -> list[Problem]:
    """Problems of `value` (found at expression `at`) against `profile`; messages start with `prefix`."""
    root = profile["type"]
    elements = {e["id"]: e for e in profile["differential"]["element"]}
    problems: list[Problem] = []
    for element_id, element in elements.items():
        if element_id == root:
            continue
        parent_id, name = element_id.rsplit(".", 1)
        for parent in _nodes((at, value), root, parent_id, elements):
            children = _children(parent, name, elements, parent_id)
            expression = f"{parent[0]}.{name.split(':')[0]}"
            problems.extend(_check_element(element, expression, children, prefix))
    return problems


def _nodes(top: _Node, root: str, element_id: str, elements: dict[str, Any]) -> list[_Node]:
    """Every value below `top` (the value of element `root`) that `element_id` (which may name slices) stands for."""
    if element_id == root:
        return [top]
    parent_id, name = element_id.rsplit(".", 1)
    found: list[_Node] = []
    for parent in _nodes(top, root, parent_id, elements):
        found.extend(_children(parent, name, elements, parent_id))
    return found


def _children(parent: _Node, name: str, elements: dict[str, Any], parent_id: str) -> list[_Node]:
    """The values of child `name` ("identifier", a slice "identifier:peerway", a choice "value[x]") of a value."""
    element_name, _, slice_name = name.partition(":")
    expression, value = parent
    if element_name.endswith("[x]"):
        # A choice element is never repeated; in JSON its name carries the type: value[x] -> valueCode.
        stem = element_name.removesuffix("[x]")
        return [
            (f"{expression}.{key}", item)
            for key, item in (value.items() if isinstance(value, Mapping) else ())
            if key.startswith(stem) and key[len(stem) : len(stem) + 1].isupper()
        ]
    child = value.get(element_name) if isinstance(value, Mapping) else None
    if child is None:
        found: list[_Node] = []
    elif isinstance(child, list):
        found = [(f"{expression}.{element_name}[{i}]", item) for i, item in enumerate(child)]
    else:
        found = [(f"{expression}.{element_name}", child)]
    if slice_name:
        sliced = elements[f"{parent_id}.{element_name}"]
        found = [node for node in found if _in_slice(node[1], sliced, elements, f"{parent_id}.{name}")]
    return found


def _in_slice(value: Any, sliced: Mapping[str, Any], elements: dict[str, Any], slice_id: str) -> bool:
    for discriminator in sliced["slicing"]["discriminator"]:
        path = discriminator["path"]
        wanted = _discriminating_value(elements, slice_id, path)
        if discriminator["type"] not in ("value", "pattern") or wanted is None:
            raise ValueError(f"{slice_id}: only slices told apart by a fixed or pattern value are supported")
        if not _matches(_walk(value, path), wanted):
            return False
    return True


def _discriminating_value(elements: dict[str, Any], slice_id: str, path: str) -> tuple[str, Any] | None:
    """What a slice member has at the discriminator's `path`: the slice's fixed[x]/pattern[x] there, or,
    for an extension slice by url that the differential leaves to the extension's own profile, that url."""
    if path == "$this":
        return _required_value(elements[slice_id])
    wanted = _required_value(elements.get(f"{slice_id}.{path}", {}))
    if wanted is None and path == "url":
        urls = _extension_profiles(elements[slice_id])
        if len(urls) == 1:
            return "fixed", urls[0]
    return wanted


def _extension_profiles(element: Mapping[str, Any]) -> list[str]:
    return [
        profile
        for type_ in element.get("type", [])
        if type_["code"] == "Extension"
        for profile in type_.get("profile", [])
    ]


def _walk(value: Any, path: str) -> Any:
    if path == "$this":
        return value
    for step in path.split("."):
        value = value.get(step) if isinstance(value, Mapping) else None
    return value


def _required_value(element: Mapping[str, Any]) -> tuple[str, Any] | None:
    """("fixed" | "pattern", value) of an element's fixed[x] or pattern[x], if it has one."""
    for key, value in element.items():
        for kind in ("fixed", "pattern"):
            if key.startswith(kind) and key[len(kind) : len(kind) + 1].isupper():
                return kind, value
    return None


def _matches(actual: Any, wanted: tuple[str, Any]) -> bool:
    kind, expected = wanted
    if kind == "fixed":
        return bool(actual == expected)
    return _matches_pattern(actual, expected)


def _matches_pattern(actual: Any, pattern: Any) -> bool:
    """FHIR pattern[x]: every value the pattern has is present in `actual`; lists match item by item."""
    if isinstance(pattern, Mapping):
        return isinstance(actual, Mapping) and all(_matches_pattern(actual.get(k), v) for k, v in pattern.items())
    if isinstance(pattern, list):
        return isinstance(actual, list) and all(any(_matches_pattern(a, p) for a in actual) for p in pattern)
    return bool(actual == pattern)


def _check_element(
    element: Mapping[str, Any], expression: str, children: list[_Node], prefix: str = ""
) -> list[Problem]:
    problems: list[Problem] = []
    label = prefix + element["id"].split(".", 1)[1]
    low, high = element.get("min"), element.get("max")
    if low is not None and len(children) < low:
        problems.append(Problem(expression, f"{label}: at least {low} required, found {len(children)}"))
    if high is not None and high != "*" and len(children) > int(high):
        allowed = "not allowed" if high == "0" else f"at most {high} allowed"
        problems.append(Problem(expression, f"{label}: {allowed}, found {len(children)}"))
    wanted = _required_value(element)
    binding = element.get("binding", {})
    types = [type_["code"] for type_ in element.get("type", [])]
    targets = [
        profile.removeprefix(_CORE)
        for type_ in element.get("type", [])
        if type_["code"] == "Reference"
        for profile in type_.get("targetProfile", [])
    ]
    extension_profiles = [_our_extension(url) for url in _extension_profiles(element)]
    for child_expression, child in children:
        if types and element["path"].endswith("[x]"):
            problems.extend(_check_choice_type(types, element["path"], label, child_expression))
        if wanted is not None and not _matches(child, wanted):
            problems.append(Problem(child_expression, f"{label}: must be {wanted[1]!r}, found {child!r}"))
        if binding.get("strength") == "required":
            problems.extend(_check_binding(binding["valueSet"], label, child_expression, child))
        if targets:
            problems.extend(_check_target(targets, label, child_expression, child))
        for extension in extension_profiles:
            if extension is not None and isinstance(child, Mapping) and child.get("url") == extension["url"]:
                problems.extend(_check_profile(child, extension, child_expression, f"{extension['id']}: "))
    return problems


def _our_extension(url: str) -> dict[str, Any] | None:
    """Our Extension definition at `url`; None for another publisher's (not ours to check)."""
    try:
        definition = _resource_at(url, "StructureDefinition")
    except KeyError:
        return None
    return definition if definition["type"] == "Extension" else None


def _check_choice_type(types: list[str], path: str, label: str, expression: str) -> list[Problem]:
    """The type a choice value has (valueCode: code) must be one the element (`path` "...value[x]") allows."""
    stem = path.rsplit(".", 1)[-1].removesuffix("[x]")
    suffix = expression.rsplit(".", 1)[-1].removeprefix(stem)
    if any(suffix == code[:1].upper() + code[1:] for code in types):
        return []
    allowed = " | ".join(f"{stem}{code[:1].upper()}{code[1:]}" for code in types)
    return [Problem(expression, f"{label}: must be {allowed}, found {expression.rsplit('.', 1)[-1]}")]


def _check_binding(valueset_url: str, label: str, expression: str, value: Any) -> list[Problem]:
    try:
        allowed = valueset_codes(valueset_url)
    except KeyError:
        return []  # another publisher's ValueSet: ours to check only when we can expand it
    if isinstance(value, str):
        found = value in {code for _, code in allowed}
    elif isinstance(value, Mapping) and "coding" in value:
        found = any((c.get("system"), c.get("code")) in allowed for c in value["coding"])
    elif isinstance(value, Mapping):
        found = (value.get("system"), value.get("code")) in allowed
    else:
        found = False
    return [] if found else [Problem(expression, f"{label}: no code from {valueset_url}")]


def _check_target(targets: list[str], label: str, expression: str, value: Any) -> list[Problem]:
    """A Reference's type (its `type`, or the type in a literal "Type/id" reference) must be a target."""
    if not isinstance(value, Mapping):
        return [Problem(expression, f"{label}: expected a Reference")]
    reference = value.get("reference")
    kind = value.get("type")
    if kind is None and isinstance(reference, str) and not reference.startswith(("#", "urn:")):
        parts = reference.split("/_history/")[0].split("/")
        kind = parts[-2] if len(parts) >= 2 else None
    if kind is None or kind in targets:
        return []  # a logical (identifier-only) or contained reference: its type cannot be told here
    return [Problem(expression, f"{label}: must refer to {' | '.join(targets)}, not {kind}")]
