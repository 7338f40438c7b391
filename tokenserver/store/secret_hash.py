"""How a secret we hand out (a refresh token, a CI token, a web session's cookie) is
kept: its SHA-256, so a read of the database gives no one a working credential."""

from __future__ import annotations

import hashlib

__all__ = ["hash_secret"]


def hash_secret(value: str) -> str:
    # surrogatepass: a value that is not valid UTF-8 still hashes (and matches nothing).
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()
