"""What a federation trust is: which issuer's ID tokens, for which audience, may become whom.

A `TrustSpec` is plain values (as YAML, JSON or a table row give them);
`TrustSpec.build()` checks every one and makes the `Trust` the verifier uses.
`check_ca_file` reads the CA file, once, when a trust is made or the server
starts; `build()` runs at every login and reads no file. Checking ID tokens
against trusts is `federation/verify.py`.
"""

from __future__ import annotations

import dataclasses
import re
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast
from urllib.parse import urlsplit

from authcore.identity import ScopeLimit, ScopePatternError
from tokenserver.authz.patterns import Pattern, PatternError
from tokenserver.names import InvalidName, check_name
from tokenserver.store.trusts import TrustFields

__all__ = ["ADMIN_TYPE", "CLAIM_NAME", "InvalidTrust", "Trust", "TrustSpec", "check_ca_file"]


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


ADMIN_TYPE = "admin"
MIN_AGE, MAX_AGE = 60, 86400
CLAIM_NAME = re.compile(r"[A-Za-z0-9_.:/-]{1,64}")


class InvalidTrust(ValueError):
    """A trust that cannot be used; the message names the field."""


def check_ca_file(path: Path) -> None:
    """InvalidTrust unless `path` is a PEM file holding CA certificates."""
    try:
        ssl.create_default_context(cafile=str(path))
    except ssl.SSLError:
        raise InvalidTrust(f"ca_file {path}: not a PEM file of CA certificates") from None
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or "cannot be read"
        raise InvalidTrust(f"ca_file {path}: {reason}") from None


def _https(field_name: str, value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.hostname or len(value) > 1024:
        raise InvalidTrust(f"{field_name} must be an https:// URL")
    return value.rstrip("/") if field_name == "issuer" else value


@dataclass(frozen=True)
class TrustSpec:
    name: str
    issuer: str
    audience: str
    scopes: Sequence[str]
    claims: Mapping[str, str] = field(default_factory=dict)
    jwks_uri: str | None = None
    jwks_file: Path | None = None
    ca_file: Path | None = None
    max_age: int = 3600

    def fields(self) -> TrustFields:
        """The plain values, as the store keeps them."""
        values = dataclasses.asdict(self)
        values["scopes"], values["claims"] = list(self.scopes), dict(self.claims)
        return cast(TrustFields, values)

    def build(self) -> Trust:
        """The trust, every field checked; InvalidTrust names what is wrong."""
        try:
            check_name(self.name, "trust name")
        except InvalidName as exc:
            raise InvalidTrust(str(exc)) from None
        issuer = _https("issuer", self.issuer)
        if not self.audience or len(self.audience) > 1024:
            raise InvalidTrust("audience must be given (1 to 1024 characters)")
        if self.jwks_uri is not None:
            _https("jwks_uri", self.jwks_uri)
        if self.jwks_uri is not None and self.jwks_file is not None:
            raise InvalidTrust("give jwks_uri or jwks_file, not both")
        if not MIN_AGE <= self.max_age <= MAX_AGE:
            raise InvalidTrust(f"max_age must be {MIN_AGE} to {MAX_AGE} seconds")
        if not 0 < len(self.scopes) <= 100:
            raise InvalidTrust("a trust needs 1 to 100 scopes")
        try:
            scopes = ScopeLimit.parse(self.scopes)
        except ScopePatternError as exc:
            raise InvalidTrust(f"bad scope: {exc}") from None
        if any(p.type == ADMIN_TYPE for p in scopes.patterns):
            raise InvalidTrust("a trust may not grant admin scopes")
        claims = {}
        for name, pattern in self.claims.items():
            if not CLAIM_NAME.fullmatch(name):
                raise InvalidTrust(f"claim name {name[:70]!r} is not a claim")
            try:
                claims[name] = Pattern(pattern)
            except PatternError as exc:
                raise InvalidTrust(f"claims.{name}: {exc}") from None
        return Trust(
            name=self.name,
            issuer=issuer,
            audience=self.audience,
            scopes=scopes,
            claims=claims,
            jwks_uri=self.jwks_uri,
            jwks_file=self.jwks_file,
            ca_file=self.ca_file,
            max_age=self.max_age,
        )
