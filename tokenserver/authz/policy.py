"""The policy protocol: who asks, what they asked for, what they get.

A policy never raises for a denied scope: it returns less (maybe nothing),
and the token endpoint answers 200 with that grant.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from authcore.identity import Identity
from authcore.scope import Access

__all__ = ["ADMIN_GROUP", "Decision", "Explaining", "Policy", "Requester"]

ADMIN_GROUP = "admin"


@dataclass(frozen=True)
class Requester:
    """The authenticated identity and where the request came from."""

    identity: Identity
    service: str
    ip: str | None = None


@dataclass(frozen=True)
class Decision:
    """What one requested scope became, and which rule said so (None: no rule)."""

    requested: Access
    actions: frozenset[str]
    rule: int | None
    reason: str


class Policy(Protocol):
    def filter(self, requester: Requester, requested: Sequence[Access]) -> list[Access]: ...


class Explaining(Policy, Protocol):
    def explain(self, requester: Requester, requested: Sequence[Access]) -> list[Decision]: ...
