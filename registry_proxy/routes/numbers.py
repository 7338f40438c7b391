"""Decimal numbers from query strings and headers: ASCII digits only, never an unbounded int().

`str.isdigit()` accepts '²' and other Unicode digits that `int()` refuses, and
`int()` refuses more than 4300 digits; both would turn a client's typo into a
crash. Here only `[0-9]+` is a number, and a value past its ceiling is the
ceiling, whatever its length.
"""

from __future__ import annotations

__all__ = ["bounded_int", "is_number"]


def is_number(text: str) -> bool:
    """True for one or more ASCII digits, nothing else."""
    return text.isascii() and text.isdigit()


def bounded_int(text: str, ceiling: int) -> int:
    """min(int(text), ceiling) for ASCII digits (checked by the caller), at any length."""
    if not is_number(text):
        raise ValueError("not a decimal number")
    significant = text.lstrip("0")
    if len(significant) > len(str(ceiling)):
        return ceiling
    return min(int(significant or "0"), ceiling)
