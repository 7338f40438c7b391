"""Builds and signs registry tokens."""

from __future__ import annotations

import base64
import datetime as dt
import os
import threading
import weakref
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
    issued_at_rfc3339: str


class TokenIds:
    """Token ids: 128 random bits each, base64url, cut from random bytes drawn 4 KiB at a time.

    One system call per 256 tokens rather than one per token. A forked child
    draws afresh, so two processes never hand out the same ids.
    """

    DRAW = 4096
    SIZE = 16

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pool = b""
        self._at = 0
        ref = weakref.ref(self)

        def forget() -> None:
            ids = ref()
            if ids is not None:
                ids._lock = threading.Lock()  # another thread may have held it at the fork
                ids._pool, ids._at = b"", 0

        os.register_at_fork(after_in_child=forget)

    def next(self) -> str:
        with self._lock:
            at = self._at
            if at + self.SIZE > len(self._pool):
                self._pool, at = os.urandom(self.DRAW), 0
            self._at = at + self.SIZE
            chunk = self._pool[at : at + self.SIZE]
        return base64.urlsafe_b64encode(chunk).rstrip(b"=").decode("ascii")


class Issuer:
    def __init__(self, keys: KeySet, issuer: str, expiration: int, x5c: bool = True) -> None:
        self._issuer = issuer
        self._expiration = expiration
        signing = keys.signing
        headers: dict[str, object] = {"typ": "JWT", "kid": signing.kid}
        if x5c:
            headers["x5c"] = [signing.public.x5c]
        self._signer = CompactSigner(signing.private, signing.alg, headers)
        self._ids = TokenIds()
        # The last second's RFC 3339 spelling: tokens of one second share it.
        self._stamp: tuple[int, str] = (-1, "")

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
            jwt_id=self._ids.next(),
            access=tuple(access),
        )
        stamp = self._stamp
        if stamp[0] != iat:
            stamp = self._stamp = (iat, now.strftime("%Y-%m-%dT%H:%M:%SZ"))
        token = self._signer.sign_json(claims.to_json())
        return IssuedToken(token, claims, self._expiration, now, stamp[1])
