"""Users from an htpasswd file of bcrypt hashes, re-read when the file changes."""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

from tokenserver.authn.base import MISS, Account, BackendUnavailable, Peeked
from tokenserver.authn.hashed import HashedPasswordBackend
from tokenserver.passwords import is_bcrypt

__all__ = ["HtpasswdBackend"]

log = logging.getLogger(__name__)

# Seconds a stat of the file stands for the warm path: an entry removed from
# the file lets a remembered password in for at most this long.
STAT_EVERY = 1.0


class HtpasswdBackend(HashedPasswordBackend):
    name = "htpasswd"

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._entries: dict[str, str] = {}
        # When `peek` last compared the file with what was read, and what it found.
        self._peek_stat = 0.0
        self._peek_current = False

    def _load(self) -> dict[str, str]:
        try:
            st = os.stat(self._path)
        except OSError as exc:
            raise BackendUnavailable(f"htpasswd file {self._path}: {exc.strerror}") from None
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        if stamp == self._stamp:
            return self._entries
        with self._lock:
            if stamp != self._stamp:
                try:
                    text = self._path.read_text(encoding="utf-8")
                except (OSError, UnicodeDecodeError) as exc:
                    # Unreadable or not UTF-8: a 503 the operator sees, not a 500.
                    reason = getattr(exc, "strerror", None) or "not UTF-8"
                    raise BackendUnavailable(f"htpasswd file {self._path}: {reason}") from None
                self._entries = self._parse(text)
                self._stamp = stamp
                log.info("htpasswd loaded", extra={"users": len(self._entries)})
        return self._entries

    def _parse(self, text: str) -> dict[str, str]:
        entries: dict[str, str] = {}
        for number, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            name, sep, hashed = line.partition(":")
            if not sep or not name:
                log.warning("htpasswd line ignored: not NAME:HASH", extra={"line": number})
            elif not is_bcrypt(hashed):
                log.warning(
                    "htpasswd line ignored: only bcrypt is accepted", extra={"line": number}
                )
            else:
                entries[name] = hashed
        return entries

    def lookup(self, username: str) -> Account | None:
        hashed = self._load().get(username)
        if hashed is None:
            return None
        return Account(username, frozenset(), fingerprint=hashed)

    def peek(self, username: str) -> Peeked:
        # For the event loop: the file as last read, while a stat at most a
        # second old says it has not changed since (a stat costs more than the
        # rest of the lookup). A changed file is read by `lookup`, in a thread.
        now = time.monotonic()
        if now - self._peek_stat >= STAT_EVERY:
            try:
                st = os.stat(self._path)
            except OSError:
                return MISS
            self._peek_current = (st.st_mtime_ns, st.st_size, st.st_ino) == self._stamp
            self._peek_stat = now
        if not self._peek_current:
            self._peek_stat = 0.0  # look again next time
            return MISS
        hashed = self._entries.get(username)
        return None if hashed is None else Account(username, frozenset(), fingerprint=hashed)
