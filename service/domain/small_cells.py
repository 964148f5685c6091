"""Small-cell suppression, pure: which figures of a stratified report to withhold so that no count under the
threshold can be read off it, directly or by subtraction.

A figure's cells are its population counts and the differences a reader can take between them: denominator -
numerator (e.g. discharges not readmitted), initial-population - measure-population (e.g. discharges with no
contact yet) and initial-population - denominator (e.g. discharges not yet followed up). A figure with any cell
above zero and under the threshold is small and withheld whole.

Strata of one stratifier add up to the total, so one withheld stratum would be the total minus the others. Two
rules keep it hidden (complementary suppression): the total itself is withheld when it is small; and in a
stratifier where exactly one stratum is withheld, the smallest other stratum with anything in it is withheld
too, so the reader learns at most the sum of two cells.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

DIFFERENCES = (
    ("denominator", "numerator"),
    ("initial-population", "measure-population"),
    ("initial-population", "denominator"),
)


def cells(populations: Mapping[str, int]) -> list[int]:
    """The counts a reader can take from a figure's populations, differences included."""
    out = list(populations.values())
    out += [populations[a] - populations[b] for a, b in DIFFERENCES if a in populations and b in populations]
    return out


def small(populations: Mapping[str, int], threshold: int) -> bool:
    return any(0 < n < threshold for n in cells(populations))


def _size(populations: Mapping[str, int]) -> int:
    return max(populations.values(), default=0)


def withheld(
    total: Mapping[str, int], stratifiers: Sequence[Sequence[Mapping[str, int]]], threshold: int
) -> tuple[bool, list[list[bool]]]:
    """(is the total withheld, which strata of each stratifier are withheld)."""
    hidden_total = small(total, threshold)
    out: list[list[bool]] = []
    for strata in stratifiers:
        hidden = [small(s, threshold) for s in strata]
        if hidden.count(True) == 1:
            others = [i for i, s in enumerate(strata) if not hidden[i] and _size(s) > 0]
            if others:
                hidden[min(others, key=lambda i: _size(strata[i]))] = True
        out.append(hidden)
    return hidden_total, out
