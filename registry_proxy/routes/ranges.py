"""`Range` (blob GET/HEAD, RFC 9110 §14) and `Content-Range` (chunked upload PATCH/PUT) headers.

Only ASCII digits count (`\\d` would take any Unicode digit), and numbers of
any length are compared without converting them whole.
"""

from __future__ import annotations

import re

from registry_proxy.routes.numbers import bounded_int

__all__ = ["MAX_OFFSET", "RangeNotSatisfiable", "byte_range", "content_range"]

# The largest offset a blob or upload can have (Go's int64, as the Go registry).
MAX_OFFSET = 2**63 - 1
# More ranges than this in one header are not worth answering piecewise.
MAX_RANGES = 100

_RANGE_SPEC = re.compile(r"([0-9]*)-([0-9]*)")
_CONTENT_RANGE = re.compile(r"(?:bytes[ =])?([0-9]+)-([0-9]+)(?:/(?:[0-9]+|\*))?")
_OWS = " \t"


class RangeNotSatisfiable(ValueError):
    """Answer 416 with `Content-Range: bytes */<size>`."""


def byte_range(header: str, size: int) -> tuple[int, int] | None:
    """The inclusive (start, end) to answer 206 with, or None to send the whole body (200).

    A unit other than `bytes` is ignored, as RFC 9110 requires. Several ranges
    are answered with the whole body (which the RFC allows) unless none of
    them is satisfiable. A malformed range, or none satisfiable: `RangeNotSatisfiable`.
    """
    unit, sep, range_set = header.partition("=")
    if not sep or unit.strip(_OWS).lower() != "bytes":
        return None
    specs = [spec.strip(_OWS) for spec in range_set.split(",")]
    specs = [spec for spec in specs if spec]
    if not specs:
        raise RangeNotSatisfiable("empty range set")
    if len(specs) > MAX_RANGES:
        return None
    satisfiable = [r for r in (_one_range(spec, size) for spec in specs) if r is not None]
    if not satisfiable:
        raise RangeNotSatisfiable("no satisfiable range")
    return satisfiable[0] if len(specs) == 1 else None


def _one_range(spec: str, size: int) -> tuple[int, int] | None:
    """(start, end) of one range-spec within `size` bytes, None if it lies outside them."""
    match = _RANGE_SPEC.fullmatch(spec)
    if match is None or match.groups() == ("", ""):
        raise RangeNotSatisfiable("malformed range")
    first, last = match.groups()
    if first == "":
        length = bounded_int(last, size)
        if length == 0:
            return None
        return size - length, size - 1
    if last != "" and _compare(last, first) < 0:
        raise RangeNotSatisfiable("range ends before it starts")
    start = bounded_int(first, size)
    if start >= size:
        return None
    end = size - 1 if last == "" else bounded_int(last, size - 1)
    return start, end


def _compare(a: str, b: str) -> int:
    """Sign of int(a) - int(b) for ASCII digit strings of any length."""
    a, b = a.lstrip("0"), b.lstrip("0")
    if len(a) != len(b):
        return -1 if len(a) < len(b) else 1
    return (a > b) - (a < b)


def content_range(header: str) -> tuple[int, int] | None:
    """The inclusive (start, end) of an upload chunk's `Content-Range`; None if malformed.

    Offsets past `MAX_OFFSET` come back as `MAX_OFFSET + 1`, which no upload can match.
    """
    match = _CONTENT_RANGE.fullmatch(header.strip(_OWS))
    if match is None:
        return None
    return bounded_int(match.group(1), MAX_OFFSET + 1), bounded_int(match.group(2), MAX_OFFSET + 1)
