"""The summary's row digest tells different rows apart: a kept decision is reused only for the very rows it was
decided from (service/app/summary.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.app.summary import _parts


def encoded(value: object) -> bytes:
    parts: list[bytes] = []
    _parts(value, parts.append)
    return b"".join(parts)


# A small alphabet, so that drawn pairs often share their pieces and differ only in how they are cut or nested.
leaves = st.one_of(
    st.none(),
    st.text(alphabet="as(:1n\ud800", max_size=3),
    st.integers(min_value=-2, max_value=12),
    st.sampled_from([datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, 1, tzinfo=timezone(timedelta(hours=1)))]),
)
rows = st.recursive(leaves, lambda inner: st.lists(inner, max_size=3).map(tuple), max_leaves=8)


def decoded(data: bytes) -> object:
    """The value back from its encoding, each leaf as (kind, text); fails unless `data` is exactly one value."""

    def one(at: int) -> tuple[object, int]:
        tag = data[at : at + 1]
        if tag == b"n":
            return ("n",), at + 1
        if tag in (b"i", b"t"):
            end = data.index(b";", at)
            return (tag.decode(), data[at + 1 : end].decode("utf-8", "surrogatepass")), end + 1
        colon = data.index(b":", at)
        count = int(data[at + 1 : colon])
        if tag == b"s":
            return ("s", data[colon + 1 : colon + 1 + count].decode("utf-8", "surrogatepass")), colon + 1 + count
        assert tag == b"(", tag
        items, at = [], colon + 1
        for _ in range(count):
            item, at = one(at)
            items.append(item)
        return tuple(items), at

    value, end = one(0)
    assert end == len(data)
    return value


def leaves_of(value: object) -> object:
    if isinstance(value, tuple):
        return tuple(leaves_of(v) for v in value)
    if value is None:
        return ("n",)
    if isinstance(value, str):
        return ("s", value)
    if isinstance(value, int):
        return ("i", str(value))
    return ("t", repr(value))


@given(rows)
def test_every_encoding_decodes_to_its_rows_so_no_two_rows_share_one(value: object) -> None:
    # A prefix code read back whole: equal encodings (and so equal digests, short of a SHA-256 collision) can
    # only come from equal rows, however the text is cut or nested.
    assert decoded(encoded(value)) == leaves_of(value)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (("ab", "c"), ("a", "bc")),
        ((("a",),), ("a",)),
        ((None,), ("n",)),
        ((1,), ("1",)),
        ((), ("",)),
        # the same instant in two zones: equal datetimes, but not the same stored row
        (datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, 1, tzinfo=timezone(timedelta(hours=1)))),
    ],
)
def test_rows_a_naive_concatenation_would_confuse_are_told_apart(a: object, b: object) -> None:
    assert encoded(a) != encoded(b)


@pytest.mark.parametrize("value", [True, 1.5, b"x", ["a"]])
def test_a_kind_of_value_it_does_not_know_is_refused(value: object) -> None:
    with pytest.raises(TypeError):
        encoded(value)
