"""`make mutation`'s verdict on a finished `mutmut run`: the score, and that every surviving mutant is one
consent/README.md lists as unable to change a decision. Exits 1 otherwise, naming the survivors to look at."""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET = 0.95
LISTED = re.compile(r"^- `(consent\.[\w.ǁ]+__mutmut_\d+)`", re.MULTILINE)


def main() -> int:
    listing = subprocess.run(
        [sys.executable, "-m", "mutmut", "results", "--all", "true"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    status = dict(line.strip().rsplit(": ", 1) for line in listing.splitlines() if ": " in line)
    counts = Counter(status.values())
    equivalent = set(LISTED.findall((ROOT / "consent" / "README.md").read_text()))
    detected = counts["killed"] + counts["timeout"]
    score = detected / len(status) if status else 0.0
    print(f"mutants: {len(status)}; " + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())))
    print(f"score (killed or timed out): {detected}/{len(status)} = {score:.1%}")
    unexplained = sorted(
        name for name, s in status.items() if s not in ("killed", "timeout") and name not in equivalent
    )
    stale = sorted(equivalent - {name for name, s in status.items() if s == "survived"})
    for name in unexplained:
        print(f"not killed and not listed as equivalent in consent/README.md: {name} ({status[name]})")
    for name in stale:
        print(f"listed as equivalent but not a survivor any more (update consent/README.md): {name}")
    return 1 if unexplained or stale or score < TARGET or not status else 0


if __name__ == "__main__":
    sys.exit(main())
