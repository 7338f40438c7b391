"""The policy protocol and the default policy.

A policy never raises for a denied scope: it returns less (maybe nothing),
and the token endpoint answers 200 with that grant.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from tokenserver.authn.base import Identity
from tokenserver.scope import Access

__all__ = ["ADMIN_GROUP", "OwnNamespacePolicy", "Policy"]

ADMIN_GROUP = "admin"
REPOSITORY_ACTIONS = frozenset({"pull", "push", "delete"})


class Policy(Protocol):
    def filter(self, identity: Identity, requested: Sequence[Access]) -> list[Access]: ...


class OwnNamespacePolicy:
    """Each user owns `<name>/*`; members of `admin` may do anything; anonymous nothing."""

    def filter(self, identity: Identity, requested: Sequence[Access]) -> list[Access]:
        granted: list[Access] = []
        for access in requested:
            actions = self._allowed(identity, access)
            if actions:
                granted.append(access.with_actions(actions))
        return granted

    def _allowed(self, identity: Identity, access: Access) -> frozenset[str]:
        if identity.kind == "anonymous" or not identity.subject:
            return frozenset()
        if ADMIN_GROUP in identity.groups:
            return access.actions
        if access.type != "repository" or not access.name.startswith(identity.subject + "/"):
            return frozenset()
        if "*" in access.actions:
            return REPOSITORY_ACTIONS
        return access.actions & REPOSITORY_ACTIONS
