"""The value patterns of ACL rules, with the semantics docker_auth users know.

A pattern is a glob (Go's `path.Match`: `*` and `?` never cross a `/`,
`[a-z]` and `[^a-z]` classes, `\\` escapes) or, between slashes, a regular
expression that may match anywhere in the value (`/^team\\//` to anchor).
Regular expressions are RE2's, which is Go's `regexp` syntax, as docker_auth
reads its rules; globs are turned into RE2 too. The rules are an
administrator's but the values an attacker's (a scope's name, an ID token's
claim): in RE2 a match takes time linear in the value whatever the pattern,
where Python's `re` backtracks (`^(a+)+$` against thirty characters: seconds).

Placeholders `${account}`, `${type}`, `${name}`, `${service}` and
`${labels:KEY}` are filled in before matching; the values are escaped, so an
account named `a*` matches only itself. A multi-valued label makes the
pattern match when any of its values does.
"""

from __future__ import annotations

import functools
import itertools
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from authcore.globs import GlobError, compile_glob, escape_glob
from authcore.regex import InvalidPattern, LinearPattern, compile_pattern
from authcore.regex import escape as escape_regex

__all__ = ["Pattern", "PatternError", "Values"]

# Upper bound on label-value combinations tried for one pattern: a user in
# thousands of groups must not turn one match into a long loop.
MAX_COMBINATIONS = 4096

_PLACEHOLDER = re.compile(r"\$\{([a-z]+)(?::([^}]*))?\}")
_SCALARS = frozenset({"account", "type", "name", "service"})


class PatternError(ValueError):
    """A pattern that cannot be used; raised when rules are loaded, never when matching."""


@dataclass(frozen=True)
class Values:
    """What placeholders stand for in one match: scalars and multi-valued labels."""

    scalars: Mapping[str, str]
    labels: Mapping[str, Sequence[str]]


@functools.lru_cache(maxsize=4096)
def _compile(source: str, is_regex: bool) -> LinearPattern:
    """A glob matches the whole value (it is compiled anchored); a regex anywhere in it."""
    try:
        return compile_pattern(source) if is_regex else compile_glob(source)
    except GlobError as exc:
        raise PatternError(str(exc)) from None
    except InvalidPattern as exc:
        raise PatternError(f"{source[:100]!r}: {exc}") from None


@functools.lru_cache(maxsize=4096)
def _compile_filled(source: str, is_regex: bool) -> LinearPattern | None:
    """None when the filled-in values make a pattern RE2 will not build (too large a
    program): it then matches nothing, as docker_auth's does, and is not built again."""
    try:
        return _compile(source, is_regex)
    except PatternError:
        return None


def _is_unicode(value: str) -> bool:
    if value.isascii():
        return True
    try:
        value.encode()
    except UnicodeEncodeError:  # a lone surrogate, as JSON's "\ud800" makes one
        return False
    return True


class Pattern:
    """One compiled rule value; `matches` is cheap when there are no placeholders."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.is_regex = len(source) > 2 and source.startswith("/") and source.endswith("/")
        self._body = source[1:-1] if self.is_regex else source
        self._placeholders = [(m.group(1), m.group(2)) for m in _PLACEHOLDER.finditer(self._body)]
        for kind, key in self._placeholders:
            if kind == "labels" and key:
                continue
            if kind in _SCALARS and key is None:
                continue
            raise PatternError(
                f"{source!r}: unknown placeholder ${{{kind}{':' + key if key else ''}}}"
            )
        # Compile once with neutral stand-ins, so a broken pattern fails at load time.
        _compile(_PLACEHOLDER.sub("x", self._body), self.is_regex)
        self._static = None if self._placeholders else _compile(self._body, self.is_regex)

    def __repr__(self) -> str:
        return f"Pattern({self.source!r})"

    def matches(self, value: str, values: Values) -> bool:
        if not _is_unicode(value):
            return False  # no text RE2 can read, so none a rule's author meant
        if self._static is not None:
            return self._static.search(value)
        for filled in itertools.islice(self._fill(values), MAX_COMBINATIONS):
            compiled = _compile_filled(filled, self.is_regex)
            if compiled is not None and compiled.search(value):
                return True
        return False

    def _fill(self, values: Values) -> Iterator[str]:
        escape = escape_regex if self.is_regex else escape_glob
        label_keys = sorted({key for kind, key in self._placeholders if kind == "labels" and key})
        choices = [values.labels.get(key, ()) for key in label_keys]
        for combination in itertools.product(*choices):
            chosen = dict(zip(label_keys, combination, strict=True))

            def substitute(m: re.Match[str], chosen: Mapping[str, str] = chosen) -> str:
                kind, key = m.group(1), m.group(2)
                raw = chosen[key] if kind == "labels" else values.scalars.get(kind, "")
                return escape(raw)

            yield _PLACEHOLDER.sub(substitute, self._body)
