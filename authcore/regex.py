"""Regular expressions that an administrator writes and an attacker's input is matched against.

They run in RE2, a linear-time engine: no pattern can make a match take
longer than its input is long, however the pattern nests (Python's `re`
backtracks, and `^(a+)+$` against thirty characters takes seconds). RE2's
syntax is Go's `regexp` syntax, which the Go registry and docker_auth speak,
so their patterns carry over; what RE2 refuses (back-references,
look-around) they refuse too.
"""

from __future__ import annotations

import re
from typing import Any

import re2

__all__ = ["InvalidPattern", "LinearPattern", "compile_pattern", "escape"]

# Enough for any pattern a person writes; a larger program is refused, not built.
MAX_PROGRAM_BYTES = 8 << 20
# Groups within groups. RE2 would take far more, but no person writes even
# this many, and refusing them keeps the depth of anything that walks a
# pattern small (PCRE2's own default limit is 250).
MAX_NESTING = 100
# Go's limit on a counted repetition; RE2 refuses 1001 to 999999999 as Go
# does, but reads a longer count as literal text (`a{99999999999}` matches
# those characters), which Go refuses: refuse it here, as Go would.
MAX_REPEAT = 1000

_REPEAT = re.compile(r"\{([0-9]+)(?:,([0-9]*))?\}")


class InvalidPattern(ValueError):
    """The pattern is not RE2 syntax (or builds too large a program)."""


class LinearPattern:
    """A compiled pattern; `search` finds it anywhere in the text, as Go's `MatchString` does."""

    __slots__ = ("_compiled", "pattern")

    def __init__(self, pattern: str, compiled: Any) -> None:
        self.pattern = pattern
        self._compiled = compiled

    def search(self, text: str) -> bool:
        return self._compiled.search(text) is not None

    def __repr__(self) -> str:
        return f"LinearPattern({self.pattern!r})"


def compile_pattern(pattern: str) -> LinearPattern:
    _check_shape(pattern)
    options = re2.Options()
    options.log_errors = False  # the refusal is ours to report, once, naming the key
    options.max_mem = MAX_PROGRAM_BYTES
    # Only whether it matches is ever asked: without submatches RE2 keeps no
    # per-group state (a search through a pattern of many groups otherwise
    # takes memory in proportion to their number times the program's size).
    options.never_capture = True
    try:
        return LinearPattern(pattern, re2.compile(pattern, options=options))
    except UnicodeEncodeError:
        raise InvalidPattern("not valid Unicode (a lone surrogate)") from None
    except re2.error as exc:
        reason = exc.args[0] if exc.args else "invalid pattern"
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise InvalidPattern(str(reason)) from None


def _check_shape(pattern: str) -> None:
    """Refuse what Go refuses and RE2 would take: deep nesting, giant repeat counts.

    A scan of the syntax that matters here (escapes, `\\Q...\\E`, classes,
    groups, counted repetitions); everything else is RE2's to judge.
    """
    depth = 0
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "\\":
            if pattern.startswith("Q", i + 1):  # literal text up to `\E` (or the end)
                end = pattern.find("\\E", i + 2)
                i = n if end < 0 else end + 2
            elif pattern[i + 1 : i + 3] in ("x{", "p{", "P{"):  # `\x{10000}` is no count
                end = pattern.find("}", i + 3)
                i = n if end < 0 else end + 1
            else:
                i += 2
            continue
        if c == "[":
            i = _class_end(pattern, i + 1)
            continue
        if c == "(":
            depth += 1
            if depth > MAX_NESTING:
                raise InvalidPattern(f"groups nest deeper than {MAX_NESTING}")
        elif c == ")":
            depth = max(depth - 1, 0)
        elif c == "{":
            repeat = _REPEAT.match(pattern, i)
            if repeat is not None:
                counts = [g for g in repeat.groups() if g]
                # A count with a leading zero makes the braces literal text, in Go and RE2 alike.
                if not any(len(g) > 1 and g[0] == "0" for g in counts) and any(
                    len(g) > len(str(MAX_REPEAT)) or int(g) > MAX_REPEAT for g in counts
                ):
                    raise InvalidPattern(
                        f"invalid repeat count {repeat.group(0)[:30]}: at most {MAX_REPEAT}"
                    )
        i += 1


def _class_end(pattern: str, i: int) -> int:
    """The index after the `]` closing a class whose body starts at `i`."""
    n = len(pattern)
    if i < n and pattern[i] == "^":
        i += 1
    if i < n and pattern[i] == "]":  # a `]` first in a class is one of its members
        i += 1
    while i < n:
        if pattern[i] == "\\":
            i += 2
            continue
        if pattern.startswith("[:", i):
            close = pattern.find(":]", i + 2)
            if close >= 0:
                i = close + 2
                continue
        if pattern[i] == "]":
            return i + 1
        i += 1
    return n  # unterminated: RE2 says so


def escape(text: str) -> str:
    """`text` as a pattern that matches exactly it, wherever it is put: in a class or not.

    Punctuation is backslash-escaped (RE2 and Go read `\\` and any ASCII
    punctuation as that character); digits, space and control characters are
    written as `\\x{..}`, so that no value becomes part of a repeat count
    (`{${n}}`); letters, `_` and everything beyond ASCII are themselves.
    """
    out = []
    for c in text:
        if not c.isascii() or c.isalpha() or c == "_":
            out.append(c)
        elif c.isprintable() and not c.isalnum() and c != " ":
            out.append("\\" + c)
        else:
            out.append(f"\\x{{{ord(c):02x}}}")
    return "".join(out)
