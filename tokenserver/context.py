"""The token server's request-context keys: the shared ones and what a token request asked and got."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from authcore.context import ACCOUNT, CLIENT_IP, REQUEST_ID, ContextKey, make_key
from authcore.scope import Access

__all__ = ["ACCOUNT", "CLIENT_IP", "GRANTED", "KEYS", "REQUESTED", "REQUEST_ID"]


def _accesses(value: Iterable[Access]) -> list[str]:
    return [str(a) for a in value]


REQUESTED: ContextKey[tuple[Access, ...]] = make_key("requested", _accesses)
GRANTED: ContextKey[tuple[Access, ...]] = make_key("granted", _accesses)

KEYS: tuple[ContextKey[Any], ...] = (REQUEST_ID, CLIENT_IP, ACCOUNT, REQUESTED, GRANTED)
