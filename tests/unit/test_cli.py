"""What the `peerway` command says about itself: its version, help for every command and option, its exit codes,
what `migrate` is doing and where it left the database, and no traceback when its reader goes away."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from service.cli import build_parser
from service.cli import main as cli_main
from service.store.migrate import script_heads

ROOT = Path(__file__).resolve().parents[2]


def test_version_names_the_installed_package(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli_main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == "peerway 0.1.0"


def test_migrate_says_which_schema_the_database_is_at(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PEERWAY_ENV", "dev")
    monkeypatch.setenv("PEERWAY_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'peerway.db'}")
    assert cli_main(["migrate"]) == 0
    (head,) = script_heads()
    said = capsys.readouterr()
    assert said.out.strip() == f"database at schema {head}"
    assert said.err.splitlines()[-1] == "peerway: bringing the sqlite database to the newest schema..."
    assert (tmp_path / "peerway.db").stat().st_size > 0


def test_check_config_names_a_bad_setting_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PEERWAY_PORT", "eighty")
    assert cli_main(["check-config"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    (bad,) = (line for line in err.splitlines() if not line.startswith("peerway: warning:"))
    assert bad.startswith("peerway: bad setting: PEERWAY_PORT: ")
    assert "eighty" in bad


def test_a_misspelt_variable_is_named_rather_than_ignored_silently(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PEERWAY_ENV", "dev")
    monkeypatch.setenv("PEERWAY_DATABSE_URL", "sqlite+aiosqlite:///elsewhere.db")
    assert cli_main(["check-config"]) == 0
    captured = capsys.readouterr()
    assert "PEERWAY_DATABSE_URL is not a Peerway setting" in captured.err
    assert captured.out.startswith("configuration OK: env dev")


def _commands() -> dict[str, argparse.ArgumentParser]:
    [commands] = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(commands.choices)


def test_every_command_and_every_option_says_what_it_is_for() -> None:
    [commands] = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    helped = {choice.dest: choice.help for choice in commands._choices_actions}
    assert len(helped) >= 15
    for name, command in _commands().items():
        assert helped.get(name), f"peerway {name} has no help"
        for action in command._actions:
            if not isinstance(action, argparse._HelpAction):
                assert action.help, f"peerway {name} {'/'.join(action.option_strings) or action.dest} has no help"


def test_help_documents_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli_main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "exit codes:" in out
    assert all(f"\n  {code}  " in out for code in (0, 1, 2))


def test_a_reader_that_goes_away_gets_no_traceback(tmp_path: Path) -> None:
    reader, writer = os.pipe()
    os.close(reader)  # like `peerway token ... | head -c 0`: the reader has gone before anything is written
    env = {**os.environ, "PEERWAY_ENV": "dev", "PYTHONPATH": str(ROOT)}
    env["PEERWAY_DATABASE_URL"] = f"sqlite+aiosqlite:///{tmp_path / 'peerway.db'}"
    try:
        ran = subprocess.run(
            [sys.executable, "-m", "service.cli", "token", "--role", "coordinator"],
            stdout=writer,
            stderr=subprocess.PIPE,
            cwd=tmp_path,
            env=env,
            check=False,
        )
    finally:
        os.close(writer)
    assert ran.returncode == 1
    assert b"Traceback" not in ran.stderr
    assert b"BrokenPipeError" not in ran.stderr
