"""A channel secret is handed to a command line (`peerway subscription create --channel-secret <secret>`), so it
never starts with "-": argparse would read it as an option (one URL-safe base64 secret in 64 did)."""

from __future__ import annotations

import secrets

import pytest

from service.app import sites
from service.cli import build_parser


def test_a_secret_drawn_with_a_leading_dash_is_drawn_again(monkeypatch: pytest.MonkeyPatch) -> None:
    drawn = iter(["-Qx9", "--zz", "Abc-_9"])
    monkeypatch.setattr(secrets, "token_urlsafe", lambda _n: next(drawn))
    assert sites.channel_secret() == "Abc-_9"


def test_every_secret_goes_through_the_command_line() -> None:
    parser = build_parser()
    for _ in range(500):
        secret = sites.channel_secret()
        args = parser.parse_args(["subscription", "create", "--site", "s", "--channel-secret", secret])
        assert args.channel_secret == secret
