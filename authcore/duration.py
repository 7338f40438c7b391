"""Durations in one grammar, the Go registry's (Go's `time.ParseDuration`): `90s`, `1h30m`, `1.5h`.

A sequence of decimal numbers, each with an optional fraction and a unit
(`ns`, `us`/`µs`, `ms`, `s`, `m`, `h`), with an optional sign; `0` alone
needs no unit. Exact in integer nanoseconds, bounded like Go's int64. The
registry's configuration takes exactly this (`parse_duration`), so a file
the Go registry reads means the same here.

The token server's lifetimes and look-backs (`--ttl 30d`, `?since=2w`) are
the same grammar with what they took before it spoke Go's (`parse_seconds`):
the units `d` (24 h) and `w` (7 d), a plain number of seconds, any case and
surrounding spaces; a positive whole number of seconds, at most 100 years.
Only ASCII digits count, and no digit run is ever long enough for `int()` to
meet a giant.
"""

from __future__ import annotations

import datetime as dt
import re

__all__ = ["MAX_SECONDS", "DurationError", "format_duration", "parse_duration", "parse_seconds"]

_SECOND = 10**9
_GO_UNITS = {
    "ns": 1,
    "us": 10**3,
    "\u00b5s": 10**3,  # micro sign
    "\u03bcs": 10**3,  # Greek mu
    "ms": 10**6,
    "s": _SECOND,
    "m": 60 * _SECOND,
    "h": 3600 * _SECOND,
}
_TOKEN_SERVER_UNITS = {**_GO_UNITS, "d": 86400 * _SECOND, "w": 7 * 86400 * _SECOND}
# `[0-9]`, not `\d`: `\d` would take other scripts' digits (Arabic-Indic ones) too.
_COMPONENT = re.compile(r"([0-9]*)(?:\.([0-9]*))?([^0-9.]*)")
_PLAIN_SECONDS = re.compile(r"[0-9]+")
_MAX_NS = 2**63 - 1
# A longer digit run overflows int64 whatever its unit; refused before int() reads it.
_MAX_DIGITS = 30
# No duration Go can hold is longer written than this (but with zeros to no purpose).
_MAX_CHARS = 256
# Longer than a lifetime means: a time this far back or ahead is still a date
# (`now - 2900000d` is before year 1, which datetime cannot hold).
MAX_SECONDS = 100 * 366 * 86400
_EXAMPLES = "a duration such as 30d, 12h, 1h30m or 3600"


class DurationError(ValueError):
    """Text that names no duration, or none in bounds; the message says which."""


class _OutOfRange(DurationError):
    pass


def _nanoseconds(text: str, units: dict[str, int], limit: int) -> int:
    """`text` in Go's grammar over `units`, signed; `_OutOfRange` past `limit` ns either way."""
    invalid = f"invalid duration {text[:50]!r}"
    if len(text) > _MAX_CHARS:
        raise DurationError(invalid)
    rest = text
    negative = rest[:1] == "-"
    if rest[:1] in ("-", "+"):
        rest = rest[1:]
    if rest == "0":
        return 0
    if not rest:
        raise DurationError(invalid)
    total = 0
    position = 0
    while position < len(rest):
        match = _COMPONENT.match(rest, position)
        assert match is not None  # Every part of the pattern may be empty.
        whole, fraction, unit = match.group(1), match.group(2) or "", match.group(3)
        if not whole and not fraction:
            raise DurationError(invalid)
        if not unit:
            raise DurationError(f"missing unit in duration {text[:50]!r}")
        scale = units.get(unit)
        if scale is None:
            raise DurationError(f"unknown unit {unit[:10]!r} in duration {text[:50]!r}")
        if len(whole) > _MAX_DIGITS or len(fraction) > _MAX_DIGITS:
            raise _OutOfRange(invalid)
        total += int(whole or "0") * scale
        if fraction:
            total += int(fraction) * scale // 10 ** len(fraction)
        if total > limit:
            raise _OutOfRange(invalid)
        position = match.end()
    return -total if negative else total


def parse_duration(text: str) -> dt.timedelta:
    """The duration `text` names in Go's grammar exactly; `DurationError` saying why not."""
    return dt.timedelta(microseconds=_nanoseconds(text, _GO_UNITS, _MAX_NS) // 1000)


def parse_seconds(text: str) -> int:
    """The token server's: whole seconds, positive, at most 100 years; `DurationError` else."""
    shown = repr(text[:40])
    too_long = DurationError(f"{shown}: at most 100 years")
    plain = text.strip().lower()
    if _PLAIN_SECONDS.fullmatch(plain):
        if len(plain) > _MAX_DIGITS:
            raise too_long
        nanoseconds = int(plain) * _SECOND
    else:
        try:
            nanoseconds = _nanoseconds(plain, _TOKEN_SERVER_UNITS, MAX_SECONDS * _SECOND)
        except _OutOfRange:
            raise too_long from None
        except DurationError as exc:
            raise DurationError(f"{exc}: {_EXAMPLES}") from None
    if nanoseconds <= 0:
        raise DurationError(f"{shown}: a positive duration, {_EXAMPLES}")
    seconds, fraction = divmod(nanoseconds, _SECOND)
    if fraction:
        raise DurationError(f"{shown}: a whole number of seconds, {_EXAMPLES}")
    if seconds > MAX_SECONDS:
        raise too_long
    return seconds


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
