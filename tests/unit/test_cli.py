"""What the `peerway` command says about itself: its version, and where `migrate` left the database."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.cli import main as cli_main
from service.store.migrate import script_heads


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
    assert capsys.readouterr().out.strip() == f"database at schema {head}"
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
