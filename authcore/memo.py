"""A bounded memo of a pure function's results, for paths that repeat the same question.

A lookup takes no lock (one dict read is atomic); an insert takes one and,
once the memo is full, drops the oldest entry first. However many distinct
keys clients make up, the memo holds at most `max_entries` of them.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable
from typing import Generic, TypeVar

__all__ = ["Memo"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Memo(Generic[K, V]):
    def __init__(self, max_entries: int) -> None:
        if max_entries < 1:
            raise ValueError("a memo holds at least one entry")
        self._max = max_entries
        self._entries: dict[K, V] = {}
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        return self._entries.get(key)

    def put(self, key: K, value: V) -> V:
        """Remember `value` for `key` and return it."""
        with self._lock:
            entries = self._entries
            if key not in entries and len(entries) >= self._max:
                del entries[next(iter(entries))]
            entries[key] = value
        return value

    def __len__(self) -> int:
        return len(self._entries)
