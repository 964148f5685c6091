"""Fault tests (marker `faults`, `make test-faults`): real worker processes killed, an EHR cut off, tokens
revoked. They also run in the normal suite, on both backends; their figures are printed at the end."""

from __future__ import annotations

import pytest

from tests.faults.support import FIGURES


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if FIGURES:
        terminalreporter.section("delivery fault figures")
        for line in FIGURES:
            terminalreporter.write_line(line)
