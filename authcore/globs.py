"""Path globs with Go's `path.Match` semantics: `*` and `?` never cross a `/`.

`[a-z]` and `[^a-z]` classes never match `/` either, and `\\` escapes the
next character. Access rules and CI-token scopes both name repositories this
way, so they share this one reading.
"""

from __future__ import annotations

import re

__all__ = ["GlobError", "compile_glob", "escape_glob", "glob_to_regex"]


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
            out.append(re.escape(glob[i]))
            i += 1
        elif c == "[":
            end, members = _glob_class(glob, i)
            out.append(members)
            i = end
        else:
            out.append(re.escape(c))
    return "".join(out)


def _glob_class(glob: str, start: int) -> tuple[int, str]:
    """Translate `[...]` starting after the '['; returns (index after ']', regex)."""
    i, n = start, len(glob)
    negate = i < n and glob[i] == "^"
    if negate:
        i += 1
    parts: list[str] = []
    while True:
        if i >= n:
            raise GlobError(f"{glob!r}: unterminated character class")
        c = glob[i]
        if c == "]" and parts:
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
            parts.append(f"{re.escape(lo)}-{re.escape(hi)}")
            i += 2
        else:
            parts.append(re.escape(lo))
    # A class never matches '/', like `*` and `?`.
    body = "".join(parts)
    return i + 1, f"[^/{body}]" if negate else f"(?!/)[{body}]"


def escape_glob(value: str) -> str:
    return re.sub(r"([*?\[\]\\])", r"\\\1", value)


def compile_glob(glob: str) -> re.Pattern[str]:
    """The glob as a regular expression to `fullmatch` against a value."""
    return re.compile(glob_to_regex(glob), re.DOTALL)
