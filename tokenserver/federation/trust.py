"""A federation trust: which issuer's ID tokens, for which audience, may become whom."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from authcore.identity import ScopeLimit
from tokenserver.authz.patterns import Pattern

__all__ = ["Trust"]


@dataclass(frozen=True)
class Trust:
    """`claims` must all match (globs or `/regex/`, as in access rules); `scopes` bound the grant."""

    name: str
    issuer: str
    audience: str
    scopes: ScopeLimit
    claims: Mapping[str, Pattern] = field(default_factory=dict)
    jwks_uri: str | None = None
    jwks_file: Path | None = None
    ca_file: Path | None = None
    max_age: int = 3600
