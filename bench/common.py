"""Timing helpers shared by the benchmarks: medians and p99 of many runs, printed side by side."""

from __future__ import annotations

import statistics
from collections.abc import Sequence


def summarise(name: str, samples_ns: Sequence[int]) -> str:
    ordered = sorted(samples_ns)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    median = statistics.median(ordered)
    return f"{name:<55} n={len(ordered):>6}  median {median / 1000:>9.1f} µs  p99 {p99 / 1000:>9.1f} µs"
