"""The scope grammar of the registry token protocol and the `Access` value.

    scope          := resourcescope [ ' ' resourcescope ]*
    resourcescope  := type [ '(' class ')' ] ':' name ':' action [ ',' action ]*

The class is deprecated and ignored. A name may carry one `host:port` prefix,
so the type ends at the first ':' and the actions start after the last one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "Access",
    "ScopeError",
    "format_scopes",
    "merge",
    "parse_scope",
    "parse_scopes",
]

MAX_NAME_LENGTH = 255

_TYPE = re.compile(r"[a-z0-9]+(?:\([a-z0-9]+\))?")
_ACTION = re.compile(r"[a-z]*|\*")
_HOST_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOSTNAME = rf"{_HOST_COMPONENT}(?:\.{_HOST_COMPONENT})*(?::[0-9]+)?"
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_NAME = re.compile(rf"(?:{_HOSTNAME}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*")


class ScopeError(ValueError):
    """A scope string does not follow the grammar."""


@dataclass(frozen=True, slots=True)
class Access:
    """Actions on one resource: what a client asks for or what a token grants."""

    type: str
    name: str
    actions: frozenset[str]

    def __str__(self) -> str:
        return f"{self.type}:{self.name}:{','.join(sorted(self.actions))}"

    def allows(self, action: str) -> bool:
        return "*" in self.actions or action in self.actions

    def with_actions(self, actions: Iterable[str]) -> Access:
        return Access(self.type, self.name, frozenset(actions))


def parse_scope(text: str) -> Access:
    """Parse one resource scope, e.g. `repository:localhost:5000/foo:pull,push`."""
    first = text.find(":")
    last = text.rfind(":")
    if first <= 0 or first == last:
        raise ScopeError("a scope is type:name:actions")
    rtype, name, actions = text[:first], text[first + 1 : last], text[last + 1 :]
    if not _TYPE.fullmatch(rtype):
        raise ScopeError("invalid resource type")
    rtype = rtype.split("(", 1)[0]
    if len(name) > MAX_NAME_LENGTH or not _NAME.fullmatch(name):
        raise ScopeError("invalid resource name")
    parts = actions.split(",")
    if not all(_ACTION.fullmatch(a) for a in parts):
        raise ScopeError("invalid action")
    return Access(rtype, name, frozenset(a for a in parts if a))


def parse_scopes(values: Iterable[str]) -> list[Access]:
    """Parse scope parameters; each value may hold several space-separated scopes."""
    return [parse_scope(item) for value in values for item in value.split(" ") if item]


def merge(accesses: Iterable[Access]) -> list[Access]:
    """Union the actions of entries naming the same resource, keeping first-seen order."""
    merged: dict[tuple[str, str], set[str]] = {}
    for access in accesses:
        merged.setdefault((access.type, access.name), set()).update(access.actions)
    return [Access(t, n, frozenset(a)) for (t, n), a in merged.items()]


def format_scopes(accesses: Iterable[Access]) -> str:
    return " ".join(str(a) for a in accesses)
