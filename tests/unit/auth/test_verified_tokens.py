"""Verified tokens are kept by their exact text until their exp, and only while the same keys are in use."""

from __future__ import annotations

from service.auth.jose import VerifiedTokens


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def test_a_token_is_kept_until_its_exp_and_not_a_moment_longer() -> None:
    clock = Clock()
    verified = VerifiedTokens(clock=clock)
    verified.put("a.b.c", "keys-1", {"sub": "p1", "exp": 1_060})
    assert verified.get("a.b.c", "keys-1") == {"sub": "p1", "exp": 1_060}
    assert verified.get("a.b.c ", "keys-1") is None  # another text is another token
    clock.now = 1_059.9
    assert verified.get("a.b.c", "keys-1") is not None
    clock.now = 1_060
    assert verified.get("a.b.c", "keys-1") is None
    clock.now = 1_000
    assert verified.get("a.b.c", "keys-1") is None  # forgotten, not merely hidden


def test_other_keys_verify_anew() -> None:
    verified = VerifiedTokens(clock=Clock())
    first, second = object(), object()
    verified.put("t", first, {"exp": 2_000})
    assert verified.get("t", second) is None
    assert verified.get("t", first) is None  # dropped when the keys were found changed


def test_a_token_without_exp_is_never_kept_and_the_number_kept_is_bounded() -> None:
    verified = VerifiedTokens(size=2, clock=Clock())
    verified.put("no-exp", "k", {"sub": "x"})
    verified.put("bool-exp", "k", {"exp": True})
    assert verified.get("no-exp", "k") is None
    assert verified.get("bool-exp", "k") is None
    for name in ("t1", "t2", "t3"):
        verified.put(name, "k", {"exp": 5_000})
    assert verified.get("t1", "k") is None
    assert verified.get("t2", "k") is not None
    assert verified.get("t3", "k") is not None
