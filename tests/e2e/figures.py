"""Figures the end-to-end tests measure (the quick start's time to first Encounter), printed at the end of the run
by tests/e2e/conftest.py."""

from __future__ import annotations

FIGURES: list[str] = []
