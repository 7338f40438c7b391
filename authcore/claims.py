"""The registry token's claim set (shared with the registry's verifier)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from authcore.scope import Access

__all__ = ["ClaimSet", "access_from_claims", "access_to_claims"]


def access_to_claims(accesses: Sequence[Access]) -> list[dict[str, Any]]:
    return [{"type": a.type, "name": a.name, "actions": sorted(a.actions)} for a in accesses]


def access_from_claims(entries: object) -> list[Access]:
    """Parse a token's `access` claim; raises ValueError if it has the wrong shape."""
    if entries is None:
        return []
    if not isinstance(entries, list):
        raise ValueError("access is not a list")
    out = []
    for entry in entries:
        if not isinstance(entry, Mapping):
            raise ValueError("access entry is not an object")
        rtype, name, actions = entry.get("type"), entry.get("name"), entry.get("actions")
        if not isinstance(rtype, str) or not isinstance(name, str):
            raise ValueError("access entry needs string type and name")
        if not isinstance(actions, list) or not all(isinstance(a, str) for a in actions):
            raise ValueError("access entry needs a list of actions")
        out.append(Access(rtype, name, frozenset(actions)))
    return out


@dataclass(frozen=True)
class ClaimSet:
    issuer: str
    subject: str
    audience: str
    expires_at: int
    not_before: int
    issued_at: int
    jwt_id: str
    access: tuple[Access, ...]

    def to_dict(self) -> dict[str, Any]:
        # The Go registry 2.8 rejects an `aud` array and non-integer times.
        # What the token server signs is this, spelt faster (its fast_path.claims_json).
        return {
            "iss": self.issuer,
            "sub": self.subject,
            "aud": self.audience,
            "exp": self.expires_at,
            "nbf": self.not_before,
            "iat": self.issued_at,
            "jti": self.jwt_id,
            "access": access_to_claims(self.access),
        }
