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
