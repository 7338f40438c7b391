"""Path globs with Go's `path.Match` semantics: `*` and `?` never cross a `/`.

`[a-z]` and `[^a-z]` classes never match `/` either, and `\\` escapes the
next character. Access rules and CI-token scopes both name repositories this
way, so they share this one reading.

A glob becomes an RE2 pattern, so matching one is linear in the value
whatever the glob: Python's `re` would backtrack over `*a*a*a*a*a*b`
against a long name (each `*` trying every split of the rest).
"""

from __future__ import annotations

import re

from authcore.regex import InvalidPattern, LinearPattern, compile_pattern, escape

__all__ = ["GlobError", "compile_glob", "escape_glob", "glob_to_regex"]

# The class of no character at all: what `[/]` is once `/` is taken out.
_NOTHING = r"[^\x00-\x{10FFFF}]"


class GlobError(ValueError):
    """A glob that cannot be used (an unterminated class, a lone backslash, a bad range)."""


def glob_to_regex(glob: str) -> str:
    out: list[str] = []
    i, n = 0, len(glob)
    while i < n:
        c = glob[i]
        i += 1
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "\\":
            if i == n:
                raise GlobError(f"{glob!r}: ends with a lone backslash")
            out.append(escape(glob[i]))
            i += 1
        elif c == "[":
            end, members = _glob_class(glob, i)
            out.append(members)
            i = end
        else:
            out.append(escape(c))
    return "".join(out)


def _glob_class(glob: str, start: int) -> tuple[int, str]:
    """Translate `[...]` starting after the '['; returns (index after ']', regex)."""
    i, n = start, len(glob)
    negate = i < n and glob[i] == "^"
    if negate:
        i += 1
    ranges: list[tuple[str, str]] = []
    while True:
        if i >= n:
            raise GlobError(f"{glob!r}: unterminated character class")
        c = glob[i]
        if c == "]" and ranges:
            break
        if c == "\\":
            i += 1
            if i >= n:
                raise GlobError(f"{glob!r}: unterminated character class")
            c = glob[i]
        lo = c
        i += 1
        if i + 1 < n and glob[i] == "-" and glob[i + 1] != "]":
            hi = glob[i + 1]
            if hi == "\\":
                i += 1
                if i + 1 >= n:
                    raise GlobError(f"{glob!r}: unterminated character class")
                hi = glob[i + 1]
            if hi < lo:
                raise GlobError(f"{glob!r}: bad range {lo}-{hi}")
            ranges.append((lo, hi))
            i += 2
        else:
            ranges.append((lo, lo))
    return i + 1, _class(ranges, negate)


def _class(ranges: list[tuple[str, str]], negate: bool) -> str:
    """A class that never matches '/', like `*` and `?`."""
    if negate:
        return "[^/" + "".join(_range(lo, hi) for lo, hi in ranges) + "]"
    # RE2 has no class subtraction: cut '/' out of every range that holds it.
    kept: list[tuple[str, str]] = []
    for lo, hi in ranges:
        if lo <= "/" <= hi:  # '.' and '0' are the characters either side of '/'
            if lo < "/":
                kept.append((lo, "."))
            if hi > "/":
                kept.append(("0", hi))
        else:
            kept.append((lo, hi))
    if not kept:
        return _NOTHING
    return "[" + "".join(_range(lo, hi) for lo, hi in kept) + "]"


def _range(lo: str, hi: str) -> str:
    return escape(lo) if lo == hi else f"{escape(lo)}-{escape(hi)}"


def escape_glob(value: str) -> str:
    return re.sub(r"([*?\[\]\\])", r"\\\1", value)


def compile_glob(glob: str) -> LinearPattern:
    """The glob as a pattern whose `search` is true when the whole value matches it."""
    try:
        return compile_pattern(rf"\A(?:{glob_to_regex(glob)})\z")
    except InvalidPattern as exc:  # too long a glob builds too large a program
        raise GlobError(f"{glob[:100]!r}: {exc}") from None
