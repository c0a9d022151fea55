"""The ``intake-cpg`` command line (placeholder until the CLI issue lands)."""

from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    print("intake-cpg: the command line is not built yet")
    return 2
