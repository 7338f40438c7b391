"""Lifetimes as people write them: `30d`, `12h`, `90m`, `45s`, `2w` or plain seconds."""

from __future__ import annotations

import re

__all__ = ["DurationError", "parse_duration"]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
# ASCII digits only, and few enough that int() never meets a giant.
_DURATION = re.compile(r"([0-9]{1,12})([smhdw]?)")
# Longer than anything means: a time this far back or ahead is still a date
# (`now - 2900000d` is before year 1, which datetime cannot hold).
MAX_SECONDS = 100 * 366 * 86400


class DurationError(ValueError):
    pass


def parse_duration(text: str) -> int:
    """Whole seconds; `DurationError` for anything else."""
    match = _DURATION.fullmatch(text.strip().lower())
    if match is None or int(match.group(1)) <= 0:
        raise DurationError(f"{text[:40]!r}: a duration such as 30d, 12h, 90m or 3600")
    seconds = int(match.group(1)) * _UNITS[match.group(2) or "s"]
    if seconds > MAX_SECONDS:
        raise DurationError(f"{text[:40]!r}: at most 100 years")
    return seconds
