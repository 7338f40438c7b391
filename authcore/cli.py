"""How both command lines end: a refusal is one line on stderr and exit status 2."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

__all__ = ["run"]


def run(
    parser: argparse.ArgumentParser,
    argv: Sequence[str] | None,
    refusals: tuple[type[Exception], ...],
) -> int:
    """Parse `argv`, run the chosen command; its `refusals` are messages, not tracebacks."""
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except refusals as exc:
        print(f"{parser.prog}: {exc}", file=sys.stderr)
        return 2
    return 0
