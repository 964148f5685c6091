"""End-to-end tests print what they measured at the end of the run."""

from __future__ import annotations

import pytest

from tests.e2e.figures import FIGURES


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if FIGURES:
        terminalreporter.section("end-to-end figures")
        for line in FIGURES:
            terminalreporter.write_line(line)
