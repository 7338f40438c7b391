"""Checking an ID token as strictly as the registry checks ours.

The signature (an allowed algorithm, a key of the trust's issuer), `iss`,
`aud`, `exp`/`nbf`/`iat` with the usual leeway, the token's age, and every
claim condition of the trust. What comes out names the trust and the
token's own subject; what was checked is kept for the audit trail.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from authcore.jwk import PublicKeyType
from authcore.jwt_verify import (
    LEEWAY,
    MAX_TOKEN_BYTES,
    SignedClaims,
    UntrustedJWT,
    by_kid,
    verify_jwt,
)
from tokenserver.authz.patterns import Values
from tokenserver.federation.keys import KeySource
from tokenserver.federation.trust import Trust

__all__ = ["InvalidIDToken", "Verified", "Verifier", "looks_like_jwt"]

_NO_VALUES = Values({}, {})


class InvalidIDToken(Exception):
    """Not a token of this trust; the message says why (never the token)."""


@dataclass(frozen=True)
class Verified:
    trust: str
    issuer: str
    subject: str
    jti: str
    # The claims the trust's conditions looked at, as the token had them.
    matched: dict[str, str] = field(default_factory=dict)


def looks_like_jwt(value: str) -> bool:
    parts = value.split(".")
    return len(parts) == 3 and value.startswith("eyJ") and len(value) <= MAX_TOKEN_BYTES


class Verifier:
    def __init__(self, trust: Trust, keys: KeySource, clock: Callable[[], dt.datetime]) -> None:
        self.trust = trust
        self._keys = keys
        self._clock = clock

    def verify(self, token: str) -> Verified:
        """Blocking (may fetch keys). Raises InvalidIDToken, or KeysUnavailable."""
        trust = self.trust
        if not looks_like_jwt(token):
            raise InvalidIDToken("not a JWT")
        now = self._clock().timestamp()
        try:
            signed = verify_jwt(
                token,
                self._key,
                issuer=trust.issuer,
                audience=trust.audience,
                leeway=LEEWAY,
                now=now,
                require=("sub", "iat"),
            )
        except UntrustedJWT as exc:
            raise InvalidIDToken(str(exc)) from None
        self._check_age(signed, now)
        claims = signed.claims
        subject = claims["sub"]
        if not isinstance(subject, str) or not subject or len(subject) > 255:
            raise InvalidIDToken("unusable subject")
        matched = self._check_claims(claims)
        jti = claims.get("jti")
        return Verified(
            trust.name, trust.issuer, subject, jti if isinstance(jti, str) else "", matched
        )

    def _key(self, header: Mapping[str, Any]) -> PublicKeyType:
        """Blocking: the issuer's key the header names, its key set fetched again if new to us."""
        kid = header.get("kid")
        key = self._keys.key(kid) if isinstance(kid, str) and kid else None
        # by_kid judges the kid and says why it names no key.
        return by_kid({kid: key} if key is not None and isinstance(kid, str) else {})(header)

    def _check_age(self, signed: SignedClaims, now: float) -> None:
        iat = signed.iat
        assert iat is not None  # required above
        if now - iat > self.trust.max_age:
            raise InvalidIDToken("older than the trust's max_age")

    def _check_claims(self, claims: dict[str, object]) -> dict[str, str]:
        matched = {}
        for name, pattern in self.trust.claims.items():
            value = claims.get(name)
            if not isinstance(value, str):
                raise InvalidIDToken(f"claim {name} is missing or not a string")
            if not pattern.matches(value, _NO_VALUES):
                raise InvalidIDToken(f"claim {name} does not match")
            matched[name] = value[:255]
        return matched
