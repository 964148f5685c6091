"""Verified tokens are kept by their exact text until their exp, and only while the same keys are in use."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.app.identity import Gatekeeper
from service.auth import Role
from service.auth.dev import mint_token
from service.auth.jose import VerifiedTokens
from service.errors import Unauthorized
from service.settings import Settings
from service.store.db import create_engine, session_factory


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


async def test_a_dev_token_kept_is_refused_once_the_dev_secret_is_replaced(tmp_path: Path) -> None:
    settings = Settings(
        env="dev",
        dev_secret_path=str(tmp_path / "dev-secret"),
        auth_keys_path=str(tmp_path / "keys.json"),
        database_url=f"sqlite+aiosqlite:///{tmp_path}/peerway.db",
        _env_file=None,
    )
    engine = create_engine(settings.database_url)
    try:
        gate = Gatekeeper(settings, session_factory(engine))
        token = mint_token(settings, "peer-1", Role.PEER)
        assert (await gate.principal(token)).subject == "peer-1"
        assert (await gate.principal(token)).subject == "peer-1"  # kept
        (tmp_path / "dev-secret").unlink()  # this install's dev secret replaced
        fresh = mint_token(settings, "peer-2", Role.PEER)
        with pytest.raises(Unauthorized):
            await gate.principal(token)
        assert (await gate.principal(fresh)).subject == "peer-2"
    finally:
        await engine.dispose()
