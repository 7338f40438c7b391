"""The token server's request-context keys: the shared ones and what a token request asked and got.

A token request's access line carries them all, so it says everything the
request's outcome needs: who (account, kind, backend), how they proved it
(via), what was asked and what was granted.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from authcore.context import ACCOUNT, CLIENT_IP, REQUEST_ID, ContextKey, make_key
from authcore.scope import Access

__all__ = [
    "ACCOUNT",
    "BACKEND",
    "CLIENT_IP",
    "GRANTED",
    "KEYS",
    "KIND",
    "REQUESTED",
    "REQUEST_ID",
    "VIA",
]


def _accesses(value: Iterable[Access]) -> list[str]:
    return [str(a) for a in value]


REQUESTED: ContextKey[tuple[Access, ...]] = make_key("requested", _accesses)
GRANTED: ContextKey[tuple[Access, ...]] = make_key("granted", _accesses)
KIND: ContextKey[str] = make_key("kind", str)
BACKEND: ContextKey[str] = make_key("backend", str)
VIA: ContextKey[str] = make_key("via", str)

KEYS: tuple[ContextKey[Any], ...] = (
    REQUEST_ID,
    CLIENT_IP,
    ACCOUNT,
    KIND,
    BACKEND,
    VIA,
    REQUESTED,
    GRANTED,
)
