"""The `registry-proxy` command line (the registry service is not built yet)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    print("registry-proxy: not available in this version", file=sys.stderr)
    return 2
