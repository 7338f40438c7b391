"""`WWW-Authenticate` as RFC 7235 writes it: challenges an upstream answers a 401 with.

One header may hold several challenges, each a scheme and either a token68
or a comma-separated list of `name=value` parameters, a value being a token
or a quoted string with backslash escapes; commas separate both challenges
and parameters, so a word followed by `=` is a parameter and any other word
begins the next challenge. Schemes and parameter names are case-insensitive
(kept lower-cased here). What an upstream sends is bounded before it is
read: a header longer than `MAX_HEADER_BYTES` or with more than `MAX_PARAMS`
parameters gives no challenge, and anything malformed raises `BadChallenge`,
the only error parsing raises.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = ["MAX_HEADER_BYTES", "MAX_PARAMS", "BadChallenge", "Challenge", "parse_challenges"]

MAX_HEADER_BYTES = 8 * 1024
MAX_PARAMS = 20

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_TOKEN68 = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
# qdtext, or a backslash and the character it escapes (obs-text is any non-ASCII one).
_QUOTED = re.compile(
    r'"((?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\U0010ffff]|\\[\t \x21-\x7e\x80-\U0010ffff])*)"'
)
_ESCAPE = re.compile(r"\\(.)", re.DOTALL)
_SPACE = re.compile(r"[ \t]*")
# Between list elements: spaces and commas (empty elements are allowed).
_SEPARATORS = re.compile(r"[ \t,]*")


class BadChallenge(ValueError):
    """The header is too large or not RFC 7235's grammar; the message says where, never what."""


@dataclass(frozen=True)
class Challenge:
    scheme: str  # lower-cased: "bearer", "basic"
    params: dict[str, str] = field(default_factory=dict)  # names lower-cased, values unescaped
    token68: str | None = None


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text, self.pos = text, 0

    def take(self, pattern: re.Pattern[str]) -> re.Match[str] | None:
        match = pattern.match(self.text, self.pos)
        if match is not None:
            self.pos = match.end()
        return match

    def at(self, char: str) -> bool:
        return self.text.startswith(char, self.pos)

    def done(self) -> bool:
        return self.pos >= len(self.text)

    def fail(self, why: str) -> BadChallenge:
        return BadChallenge(f"{why} at character {self.pos}")


def parse_challenges(header: str) -> list[Challenge]:
    """Every challenge of `header` (several headers joined by ", " are one list), in order."""
    if len(header.encode("utf-8", "surrogatepass")) > MAX_HEADER_BYTES:
        raise BadChallenge(f"longer than {MAX_HEADER_BYTES} bytes")
    scanner = _Scanner(header)
    challenges: list[Challenge] = []
    count = 0
    scanner.take(_SEPARATORS)
    while not scanner.done():
        scheme = scanner.take(_TOKEN)
        if scheme is None:
            raise scanner.fail("no auth-scheme")
        challenge = _challenge(scanner, scheme.group().lower())
        count += len(challenge.params)
        if count > MAX_PARAMS:
            raise BadChallenge(f"more than {MAX_PARAMS} parameters")
        challenges.append(challenge)
    return challenges


def _challenge(scanner: _Scanner, scheme: str) -> Challenge:
    """The rest of one challenge, its scheme read; ends past the separators after it."""
    separators = scanner.take(_SEPARATORS)
    if scanner.done() or (separators is not None and "," in separators.group()):
        return Challenge(scheme)  # a challenge without parameters
    token68 = _token68(scanner)
    if token68 is not None:
        return Challenge(scheme, token68=token68)
    params: dict[str, str] = {}
    while not scanner.done():
        mark = scanner.pos
        name = scanner.take(_TOKEN)
        if name is None:
            raise scanner.fail("no parameter name")
        scanner.take(_SPACE)
        if not scanner.at("="):
            scanner.pos = mark  # the next challenge's scheme
            break
        scanner.pos += 1
        key = name.group().lower()
        if key in params:
            raise scanner.fail(f"parameter {key[:40]!r} twice")
        params[key] = _value(scanner)
        if len(params) > MAX_PARAMS:
            raise BadChallenge(f"more than {MAX_PARAMS} parameters")
        scanner.take(_SPACE)
        if not scanner.done() and not scanner.at(","):
            raise scanner.fail("no comma after a parameter")
        scanner.take(_SEPARATORS)
    return Challenge(scheme, params)


def _token68(scanner: _Scanner) -> str | None:
    """A token68 if one stands alone here (up to a comma or the end), else None, nothing read."""
    start = scanner.pos
    match = scanner.take(_TOKEN68)
    if match is not None:
        scanner.take(_SPACE)
        if scanner.done() or scanner.at(","):
            scanner.take(_SEPARATORS)
            return match.group()
    scanner.pos = start
    return None


def _value(scanner: _Scanner) -> str:
    scanner.take(_SPACE)
    quoted = scanner.take(_QUOTED)
    if quoted is not None:
        return _ESCAPE.sub(r"\1", quoted.group(1))
    token = scanner.take(_TOKEN)
    if token is None:
        raise scanner.fail("no parameter value")
    return token.group()
