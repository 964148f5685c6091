"""The byte-level shape check of JSON bodies (service/fhir/shape.py): what it refuses, where it says the fault
is, and what it must let through (brackets inside strings, legal depths, long Attachment data)."""

from __future__ import annotations

import json
import tracemalloc
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.errors import BadRequest, InvalidResource, PeerwayError, TooLong
from service.fhir.shape import (
    FAST_PASS_BYTES,
    MAX_DEPTH,
    JsonLimits,
    _fits,
    _scan,
    check_shape,
    looks_like_json,
    readable,
)
from tests.conftest import FIXTURES


def nested(levels: int) -> bytes:
    return b"[" * levels + b"]" * levels


def refusal(body: bytes | dict[str, Any], limits: JsonLimits | None = None) -> PeerwayError:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    with pytest.raises(PeerwayError) as caught:
        check_shape(raw, limits or JsonLimits())
    return caught.value


@pytest.mark.parametrize(
    "body",
    [
        nested(MAX_DEPTH),
        json.dumps({"a": "[" * 4000, "b": "{" * 4000}).encode(),  # brackets inside a string are text
        json.dumps({"a": '\\"[[[[' * 600}).encode(),  # escaped quotes do not end the string early
        json.dumps({"resourceType": "Patient", "text": {"div": "<div>" + "x" * 60_000 + "</div>"}}).encode(),
        json.dumps({"photo": [{"data": "QUJD" * 200_000}]}).encode(),
        json.dumps({"value": 1234567890.123456789, "big": -12345678901234567890}).encode(),
        json.dumps({"n": "x" * 4096}).encode(),
        json.dumps({"n": "é" * 4096}, ensure_ascii=True).encode(),  # 4,096 characters written as 24,576 bytes
        b"",
        b"not json at all [[[",
    ],
    ids=["depth-64", "brackets-in-text", "escaped-quotes", "div", "attachment", "numbers", "4096", "escapes", "empty",
         "text"],
)  # fmt: skip
def test_what_fits_passes(body: bytes) -> None:
    check_shape(body)


def test_depth_65_is_refused_naming_the_innermost_element() -> None:
    error = refusal(nested(MAX_DEPTH + 1))
    assert isinstance(error, BadRequest)
    assert error.expression == "body" + "[0]" * MAX_DEPTH


def test_a_deep_resource_is_named_from_its_resource_type_even_when_that_comes_last() -> None:
    value: Any = "leaf"
    for _ in range(40):
        value = {"extension": [value]}
    error = refusal({"entry": [{"resource": value}], "resourceType": "Bundle"})
    assert str(error.expression).startswith("Bundle.entry[0].resource.extension[0]")


@pytest.mark.parametrize(
    ("body", "expression", "kind"),
    [
        ({"resourceType": "Patient", "name": [{"given": ["a", "b" * 4097]}]}, "Patient.name[0].given[1]", TooLong),
        ({"resourceType": "Patient", "text": {"div": "x" * 70_000}}, "Patient.text.div", TooLong),
        ({"a": [1, 2, {"b": "x" * 5000}]}, "body.a[2].b", TooLong),
        (b'{"a": {"b": [0, 1e' + b"9" * 50 + b"]}}", "body.a.b[1]", InvalidResource),
        (b'{"resourceType":"Encounter","length":{"value":' + b"1" * 5000 + b"}}", "Encounter.length.value",
         InvalidResource),
    ],
    ids=["given", "div", "api-field", "exponent", "integer"],
)  # fmt: skip
def test_too_long_is_refused_naming_the_element(
    body: bytes | dict[str, Any], expression: str, kind: type[PeerwayError]
) -> None:
    error = refusal(body)
    assert isinstance(error, kind)
    assert error.expression == expression
    assert error.status in (400, 422)


def test_limits_can_be_set() -> None:
    assert refusal(nested(5), JsonLimits(depth=4)).expression == "body[0][0][0][0]"
    check_shape(nested(4), JsonLimits(depth=4))


@pytest.mark.parametrize(
    ("body", "answer"),
    [(b"  {", True), (b"\n[1]", True), (b"x", False), (b"", False), (b"\xef\xbb\xbf {}", True),
     ("[1]".encode("utf-16"), True), ("[1]".encode("utf-32-be"), True)],
)  # fmt: skip
def test_only_what_starts_as_json_is_checked(body: bytes, answer: bool) -> None:
    assert looks_like_json(body) is answer


# The quick pass (bytes operations over a body json.loads reads) must never let through what the lexer refuses,
# and must let a discharge Bundle through on its own: otherwise every message would pay for the lexer again.

_texts = st.text(alphabet=st.sampled_from('ab"\\/[]{}0123456789.e-+ é\n'), max_size=12)
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**45), 10**45) | st.floats(allow_nan=False) | _texts,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_texts, inner, max_size=4),
    max_leaves=40,
)
_small = JsonLimits(depth=4, string=6)


def _outcome(check: Callable[[], object]) -> tuple[type[PeerwayError], str | None] | None:
    try:
        check()
    except PeerwayError as error:
        return type(error), error.expression
    return None


@given(value=_json_values, indent=st.sampled_from([None, 1]), ascii_only=st.booleans())
def test_the_quick_pass_answers_as_the_lexer_on_json(value: Any, indent: int | None, ascii_only: bool) -> None:
    body = json.dumps(value, indent=indent, ensure_ascii=ascii_only).encode()
    for limits in (_small, JsonLimits()):
        assert _outcome(lambda: check_shape(body, limits)) == _outcome(lambda: _scan(body, limits))  # noqa: B023
        if (read := _fits(body, limits)) is not None:
            _scan(body, limits)  # never raises where the quick pass said the body fits
            assert json.dumps(read.value) == json.dumps(json.loads(body))  # and hands on what json.loads reads


@given(body=st.binary(max_size=60) | st.text(alphabet='{}[]"\\:,1e5 a\n', max_size=60).map(str.encode))
def test_the_quick_pass_answers_as_the_lexer_on_anything(body: bytes) -> None:
    for limits in (_small, JsonLimits()):
        assert _outcome(lambda: check_shape(body, limits)) == _outcome(lambda: _scan(readable(body), limits))  # noqa: B023


def test_a_discharge_bundle_fits_without_the_lexer() -> None:
    body = (FIXTURES / "davinci/davinci-alerts-discharge-notification-message-bundle-01.json").read_bytes()
    assert _fits(body, JsonLimits())


def test_a_long_number_inside_a_string_is_text() -> None:
    body = json.dumps({"system": "urn:oid:" + "1." * 40 + "1", "n": "9" * 50}).encode()
    assert _outcome(lambda: check_shape(body)) is None


# What is checked is what json.loads reads: it reads a body led by a UTF-8 byte order mark, and UTF-16 or UTF-32
# ones, so those are checked as the text they decode to (a BOM once let a deep body past the check: a 500).


@pytest.mark.parametrize(
    "encode",
    [lambda t: b"\xef\xbb\xbf" + t.encode(), lambda t: t.encode("utf-16"), lambda t: t.encode("utf-16-be"),
     lambda t: t.encode("utf-32")],
    ids=["utf-8-bom", "utf-16", "utf-16-be-no-bom", "utf-32"],
)  # fmt: skip
def test_a_body_json_loads_reads_is_checked_whatever_its_encoding(encode: Callable[[str], bytes]) -> None:
    deep = json.dumps({"resourceType": "Patient", "extension": json.loads(nested(MAX_DEPTH + 5))})
    body = encode(deep)
    assert json.loads(body) == json.loads(deep)
    assert looks_like_json(body)
    error = refusal(body)
    assert isinstance(error, BadRequest)
    assert str(error.expression).startswith("Patient.extension[0][0]")
    check_shape(encode(json.dumps({"resourceType": "Patient", "extension": []})))


# The quick pass holds about 30 times the body at once (and runs before any credential is verified): a body
# larger than FAST_PASS_BYTES goes to the lexer, which holds little more than its open brackets.


@pytest.mark.parametrize("item", [b'""', b"{}", b"[]", b"0"])
def test_a_large_body_is_checked_in_memory_that_does_not_grow_with_it(item: bytes) -> None:
    count = (FAST_PASS_BYTES + 1024) // (len(item) + 1)
    body = b"[" + b",".join([item] * count) + b"]"
    assert len(body) > FAST_PASS_BYTES
    tracemalloc.start()
    try:
        check_shape(body)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < len(body) // 4
