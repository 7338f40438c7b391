"""Durations written as the Go registry writes them (Go's `time.ParseDuration`): `90s`, `1h30m`.

A sequence of decimal numbers, each with an optional fraction and a unit
(`ns`, `us`/`µs`, `ms`, `s`, `m`, `h`), with an optional sign; `0` alone
needs no unit. Exact in integer nanoseconds, bounded like Go's int64.
"""

from __future__ import annotations

import datetime as dt
import re

__all__ = ["format_duration", "parse_duration"]

_UNITS = {
    "ns": 1,
    "us": 10**3,
    "\u00b5s": 10**3,  # micro sign
    "\u03bcs": 10**3,  # Greek mu
    "ms": 10**6,
    "s": 10**9,
    "m": 60 * 10**9,
    "h": 3600 * 10**9,
}
_COMPONENT = re.compile(r"([0-9]*)(?:\.([0-9]*))?([^0-9.]*)")
_MAX_NS = 2**63 - 1
# Longer digit runs than this overflow int64 whatever their unit; stop before int().
_MAX_DIGITS = 30


def parse_duration(text: str) -> dt.timedelta:
    """The duration `text` names; `ValueError` saying why not."""
    rest = text
    negative = rest[:1] == "-"
    if rest[:1] in ("-", "+"):
        rest = rest[1:]
    if rest == "0":
        return dt.timedelta(0)
    if not rest:
        raise ValueError(f"invalid duration {text[:50]!r}")
    total = 0
    position = 0
    while position < len(rest):
        match = _COMPONENT.match(rest, position)
        assert match is not None  # Every part of the pattern may be empty.
        whole, fraction, unit = match.group(1), match.group(2) or "", match.group(3)
        if not whole and not fraction:
            raise ValueError(f"invalid duration {text[:50]!r}")
        if not unit:
            raise ValueError(f"missing unit in duration {text[:50]!r}")
        scale = _UNITS.get(unit)
        if scale is None:
            raise ValueError(f"unknown unit {unit[:10]!r} in duration {text[:50]!r}")
        if len(whole) > _MAX_DIGITS or len(fraction) > _MAX_DIGITS:
            raise ValueError(f"invalid duration {text[:50]!r}")
        total += int(whole or "0") * scale
        if fraction:
            total += int(fraction) * scale // 10 ** len(fraction)
        if total > _MAX_NS:
            raise ValueError(f"invalid duration {text[:50]!r}")
        position = match.end()
    return dt.timedelta(microseconds=(-total if negative else total) // 1000)


def format_duration(value: dt.timedelta) -> str:
    """Go's `Duration.String()` for whole seconds and more: `168h0m0s`, `1m30s`, `0s`."""
    seconds = int(value.total_seconds())
    sign, seconds = ("-", -seconds) if seconds < 0 else ("", seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{sign}{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{sign}{minutes}m{secs}s"
    return f"{sign}{secs}s"
