"""The one value type every other consent module shares: a (system, code) pair.

It lives on its own so that `consent.categories` (vocabulary built from Codings) and `consent.model`
(records that refer to `DataCategory`) can import it without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Coding"]


@dataclass(frozen=True, slots=True)
class Coding:
    """A code from a code system, e.g. Coding("http://terminology.hl7.org/CodeSystem/v3-ActReason", "COC")."""

    system: str
    code: str

    def __str__(self) -> str:
        return f"{self.system}#{self.code}"
