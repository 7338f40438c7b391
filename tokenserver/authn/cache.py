"""Remembers successful password checks so the warm path skips bcrypt.

Entries are keyed by a keyed BLAKE2b MAC (a per-process random key) of
backend, user and password, so the cache never holds anything from which the password could
be recovered; each entry also records the account's credential fingerprint,
so a password change, deletion or disable makes it worthless at once.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable

from authcore.cache import Cache
from tokenserver.secret import Secret

__all__ = ["CredentialCache"]


class CredentialCache:
    def __init__(
        self,
        ttl: float,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl = ttl
        self._key = secrets.token_bytes(32)
        # digest -> the account's credential fingerprint when the password was checked
        self._remembered: Cache[bytes, str] = Cache(max_entries, ttl=ttl, clock=clock)

    def _digest(self, backend: str, username: str, password: Secret) -> bytes:
        msg = b"\x00".join(
            part.encode("utf-8", "surrogatepass") for part in (backend, username, password.reveal())
        )
        # BLAKE2b is a MAC when keyed, and a quarter of HMAC-SHA256's cost here.
        return hashlib.blake2b(msg, key=self._key, digest_size=32).digest()

    def hit(self, backend: str, username: str, password: Secret, fingerprint: str) -> bool:
        if self._ttl <= 0:
            return False
        key = self._digest(backend, username, password)
        cached_fingerprint = self._remembered.get(key)
        if cached_fingerprint is None:
            return False
        if not hmac.compare_digest(cached_fingerprint, fingerprint):
            # Dropped, not merely skipped; a remember racing with this costs
            # no more than one password check.
            self._remembered.pop(key)
            return False
        return True

    def remember(self, backend: str, username: str, password: Secret, fingerprint: str) -> None:
        if self._ttl <= 0:
            return
        self._remembered.put(self._digest(backend, username, password), fingerprint)

    def clear(self) -> None:
        self._remembered.clear()

    def __len__(self) -> int:
        return len(self._remembered)
