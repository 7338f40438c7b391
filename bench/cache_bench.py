"""Cache speed: `authcore.cache.Cache` against cachetools' LRU, FIFO and TTL caches.

Times, per operation, a lookup that hits, a lookup that misses, and a put of a
new key into a full cache (so every put also drops one), with `--entries` keys
(default 10 000) of the shape of a token or a digest, `--ops` operations per
run (default 2 000 000), and keeps the best of `--rounds` runs. The warm token
path does a few hits per request, so the hit is the figure that counts.

cachetools is optional: without it only our cache is timed. cachetools' caches
are timed without a lock, though the services would need one around them, so
the comparison favours cachetools.

    .venv/bin/python bench/cache_bench.py [--entries N] [--ops N] [--rounds N]
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import timeit
from collections.abc import Callable, MutableMapping
from pathlib import Path
from typing import Any, Protocol

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from authcore.cache import Cache


class Subject(Protocol):
    def get(self, key: str) -> Any: ...
    def put(self, key: str, value: int) -> Any: ...


class Mapped:
    """A cachetools cache behind the same two calls as ours."""

    def __init__(self, cache: MutableMapping[str, int]) -> None:
        self.get = cache.get
        self._cache = cache

    def put(self, key: str, value: int) -> None:
        self._cache[key] = value


def subjects(entries: int) -> dict[str, Callable[[], Subject]]:
    made: dict[str, Callable[[], Subject]] = {
        "ours, bounded": lambda: Cache[str, int](entries),
        "ours, ttl": lambda: Cache[str, int](entries, ttl=3600.0),
    }
    try:
        import cachetools
    except ImportError:
        print("cachetools is not installed: timing ours alone", file=sys.stderr)
        return made
    made["cachetools LRUCache"] = lambda: Mapped(cachetools.LRUCache(entries))
    made["cachetools FIFOCache"] = lambda: Mapped(cachetools.FIFOCache(entries))
    made["cachetools TTLCache"] = lambda: Mapped(cachetools.TTLCache(entries, ttl=3600.0))
    return made


def keys(count: int, salt: str) -> list[str]:
    return [hashlib.sha256(f"{salt}{n}".encode()).hexdigest() for n in range(count)]


def best_ns(run: Callable[[], object], ops: int, rounds: int) -> float:
    return min(timeit.repeat(run, number=1, repeat=rounds)) / ops * 1e9


def measure(make: Callable[[], Subject], entries: int, ops: int, rounds: int) -> list[float]:
    held = keys(entries, "held")
    absent = keys(entries, "absent")
    passes = max(1, ops // entries)
    cache = make()
    for n, key in enumerate(held):
        cache.put(key, n)
    get = cache.get

    def hits() -> None:
        for _ in range(passes):
            for key in held:
                get(key)

    def misses() -> None:
        for _ in range(passes):
            for key in absent:
                get(key)

    # Two sets of keys in turn into a full cache: each put is of a key the
    # cache no longer holds, and drops the oldest entry.
    turns = [absent, held]

    def puts() -> None:
        put = cache.put
        for p in range(passes):
            for n, key in enumerate(turns[p % 2]):
                put(key, n)

    done = passes * entries
    return [best_ns(hits, done, rounds), best_ns(misses, done, rounds), best_ns(puts, done, rounds)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=10_000)
    parser.add_argument("--ops", type=int, default=2_000_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(f"{args.entries} entries, {args.ops} operations a run, ns per operation (best)")
    print(f"{'':24} {'get hit':>9} {'get miss':>9} {'put+drop':>9}")
    for name, make in subjects(args.entries).items():
        hit, miss, put = measure(make, args.entries, args.ops, args.rounds)
        print(f"{name:24} {hit:9.0f} {miss:9.0f} {put:9.0f}", flush=True)


if __name__ == "__main__":
    main()
