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
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

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
        self._max = max_entries
        self._clock = clock
        self._key = secrets.token_bytes(32)
        self._entries: OrderedDict[bytes, tuple[str, float]] = OrderedDict()
        self._lock = threading.Lock()

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
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return False
            cached_fingerprint, expires = entry
            if expires <= self._clock() or not hmac.compare_digest(cached_fingerprint, fingerprint):
                del self._entries[key]
                return False
            return True

    def remember(self, backend: str, username: str, password: Secret, fingerprint: str) -> None:
        if self._ttl <= 0:
            return
        key = self._digest(backend, username, password)
        with self._lock:
            self._entries[key] = (fingerprint, self._clock() + self._ttl)
            self._entries.move_to_end(key)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
