"""Who a request acts as (`Identity`), and the scope patterns that bound a CI token.

An identity is what policy sees: a subject, its kind, its groups, the
backend that vouched for it, and for a CI token the patterns nothing outside
of which is ever granted:

    repository:team/app:pull,push     one repository
    repository:team/*:pull            every repository one level under team/
    registry:catalog:*                every action

The name is a glob with the ACL rules' semantics (`*` and `?` stay within one
path component). A request is narrowed to the actions the patterns allow; the
policy then filters what is left.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from authcore.globs import GlobError, compile_glob
from authcore.scope import Access

__all__ = [
    "Identity",
    "Kind",
    "ScopeLimit",
    "ScopePattern",
    "ScopePatternError",
    "parse_scope_pattern",
]

Kind = Literal["user", "ci", "federated", "anonymous"]

_TYPE = re.compile(r"[a-z0-9]+")
_ACTION = re.compile(r"[a-z]+|\*")
_NAME_CHARS = re.compile(r"[a-z0-9._/:*?\[\]^-]+")


class ScopePatternError(ValueError):
    pass


_glob = functools.lru_cache(maxsize=4096)(compile_glob)


@dataclass(frozen=True)
class ScopePattern:
    type: str
    name: str
    actions: frozenset[str]

    def __str__(self) -> str:
        # A scope's text form, the name a glob: written in one place, `scope.py`.
        return str(Access(self.type, self.name, self.actions))


def parse_scope_pattern(text: str) -> ScopePattern:
    """`TYPE:NAME-GLOB:ACTION[,ACTION...]`; the type ends at the first ':', the actions after the last."""
    first, last = text.find(":"), text.rfind(":")
    if first < 0 or first == last:
        raise ScopePatternError(f"{text!r}: expected TYPE:NAME:ACTIONS")
    kind, name, actions = text[:first], text[first + 1 : last], text[last + 1 :]
    if not _TYPE.fullmatch(kind):
        raise ScopePatternError(f"{text!r}: the type is lower-case letters and digits")
    if not name or not _NAME_CHARS.fullmatch(name) or name.startswith("/"):
        raise ScopePatternError(f"{text!r}: the name is a repository name or a glob")
    try:
        _glob(name)
    except GlobError as exc:
        raise ScopePatternError(f"{text!r}: {exc}") from None
    parts = actions.split(",")
    if not all(_ACTION.fullmatch(a) for a in parts):
        raise ScopePatternError(f"{text!r}: actions are lower-case words or '*'")
    return ScopePattern(kind, name, frozenset(parts))


@dataclass(frozen=True)
class ScopeLimit:
    patterns: tuple[ScopePattern, ...]

    @classmethod
    def parse(cls, texts: Iterable[str]) -> ScopeLimit:
        patterns = tuple(parse_scope_pattern(t) for t in texts)
        if not patterns:
            raise ScopePatternError("at least one scope is needed")
        return cls(patterns)

    def __str__(self) -> str:
        return " ".join(str(p) for p in self.patterns)

    def allowed(self, access: Access) -> frozenset[str]:
        allowed: set[str] = set()
        for p in self.patterns:
            if p.type == access.type and _glob(p.name).search(access.name):
                allowed |= p.actions
        if not allowed:
            return frozenset()
        if "*" in allowed:
            return access.actions
        if "*" in access.actions:
            return frozenset(allowed)
        return access.actions & allowed

    def narrow(self, requested: Sequence[Access]) -> list[Access]:
        out = []
        for access in requested:
            actions = self.allowed(access)
            if actions:
                out.append(access.with_actions(actions))
        return out


@dataclass(frozen=True)
class Identity:
    """Who a request acts as, after authentication."""

    subject: str
    kind: Kind = "user"
    groups: frozenset[str] = field(default_factory=frozenset)
    backend: str = ""
    # A CI token's or a trust's own scopes: nothing outside them is ever granted.
    limit: ScopeLimit | None = None
    # What vouched for a federated identity (its trust, the ID token's issuer,
    # subject, id and the claims its trust checked), for the audit trail and
    # the `trust` label of access rules. Never a credential.
    attributes: tuple[tuple[str, str], ...] = ()
    # What the backend says identifies the account as it was proven, where it
    # can (the token server's database: the account, never reused, and its
    # password). What is bound to an identity (a web session, a refresh token)
    # holds only while this is unchanged: a user deleted and created again, or
    # given a new password, is not reached by it.
    account_key: str = ""

    def attribute(self, key: str) -> str | None:
        return next((v for k, v in self.attributes if k == key), None)

    @classmethod
    def anonymous(cls) -> Identity:
        return cls("", "anonymous")
