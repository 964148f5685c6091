"""python -m fhir_profiles package [--out build/fhir]: write Peerway's FHIR NPM package (a .tgz)."""

from __future__ import annotations

import argparse
from pathlib import Path

from fhir_profiles.package import build_package


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fhir_profiles", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    package = commands.add_parser("package", help="build the FHIR NPM package (package.json, .index.json, data)")
    package.add_argument("--out", type=Path, default=Path("build/fhir"), help="folder to write it in")
    arguments = parser.parse_args(argv)
    print(build_package(arguments.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
