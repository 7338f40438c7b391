"""Builds and signs registry tokens."""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from authcore.claims import ClaimSet
from authcore.scope import Access
from tokenserver.jws import CompactSigner
from tokenserver.keys import KeySet

__all__ = ["IssuedToken", "Issuer"]


@dataclass(frozen=True)
class IssuedToken:
    token: str
    claims: ClaimSet
    expires_in: int
    issued_at: dt.datetime

    @property
    def issued_at_rfc3339(self) -> str:
        return self.issued_at.strftime("%Y-%m-%dT%H:%M:%SZ")


class Issuer:
    def __init__(self, keys: KeySet, issuer: str, expiration: int, x5c: bool = False) -> None:
        self._issuer = issuer
        self._expiration = expiration
        signing = keys.signing
        headers: dict[str, object] = {"typ": "JWT", "kid": signing.kid}
        if x5c:
            headers["x5c"] = [signing.public.x5c]
        self._signer = CompactSigner(signing.private, signing.alg, headers)

    def issue(
        self, subject: str, audience: str, access: Sequence[Access], now: dt.datetime
    ) -> IssuedToken:
        now = now.replace(microsecond=0)
        iat = int(now.timestamp())
        claims = ClaimSet(
            issuer=self._issuer,
            subject=subject,
            audience=audience,
            expires_at=iat + self._expiration,
            not_before=iat,
            issued_at=iat,
            jwt_id=secrets.token_urlsafe(16),
            access=tuple(access),
        )
        return IssuedToken(self._signer.sign(claims.to_dict()), claims, self._expiration, now)
