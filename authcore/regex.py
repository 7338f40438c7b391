"""Regular expressions that an administrator writes and an attacker's input is matched against.

They run in RE2, a linear-time engine: no pattern can make a match take
longer than its input is long, however the pattern nests (Python's `re`
backtracks, and `^(a+)+$` against thirty characters takes seconds). RE2's
syntax is Go's `regexp` syntax, which the Go registry and docker_auth speak,
so their patterns carry over; what RE2 refuses (back-references,
look-around) they refuse too.
"""

from __future__ import annotations

from typing import Any

import re2

__all__ = ["InvalidPattern", "LinearPattern", "compile_pattern"]

# Enough for any pattern a person writes; a larger program is refused, not built.
MAX_PROGRAM_BYTES = 8 << 20


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
    options = re2.Options()
    options.log_errors = False  # the refusal is ours to report, once, naming the key
    options.max_mem = MAX_PROGRAM_BYTES
    try:
        return LinearPattern(pattern, re2.compile(pattern, options=options))
    except re2.error as exc:
        reason = exc.args[0] if exc.args else "invalid pattern"
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise InvalidPattern(str(reason)) from None
