"""Users from an htpasswd file of bcrypt hashes, re-read when the file changes."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

from tokenserver.authn.base import MISS, Account, BackendUnavailable, Peeked
from tokenserver.authn.hashed import HashedPasswordBackend
from tokenserver.passwords import is_bcrypt

__all__ = ["HtpasswdBackend"]

log = logging.getLogger(__name__)


class HtpasswdBackend(HashedPasswordBackend):
    name = "htpasswd"

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._entries: dict[str, str] = {}

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
        # A stat and a dict: cheap enough for the event loop. A changed file is
        # read by `lookup`, in a thread.
        try:
            st = os.stat(self._path)
        except OSError:
            return MISS
        if (st.st_mtime_ns, st.st_size, st.st_ino) != self._stamp:
            return MISS
        hashed = self._entries.get(username)
        return None if hashed is None else Account(username, frozenset(), fingerprint=hashed)
