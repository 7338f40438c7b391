"""The one cache: answers what was put, holds at most its size, drops the value stored
longest ago first, lets values expire by a clock; and no other cache in the product."""

from __future__ import annotations

import ast
import threading
from pathlib import Path

import pytest

from authcore.cache import Cache

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("authcore", "tokenserver", "registry_proxy")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_cache_answers_what_was_put_and_nothing_else() -> None:
    cache: Cache[str, int] = Cache(4)
    assert cache.get("a") is None
    assert cache.put("a", 1) == 1
    assert cache.get("a") == 1
    assert cache.get("b") is None
    cache.put("a", 2)  # a new value for a key replaces the old, no second entry
    assert cache.get("a") == 2 and len(cache) == 1


def test_a_full_cache_drops_its_oldest_entry() -> None:
    cache: Cache[int, int] = Cache(3)
    for key in range(3):
        cache.put(key, key * 10)
    cache.put(3, 30)
    assert cache.get(0) is None
    assert [cache.get(k) for k in (1, 2, 3)] == [10, 20, 30]
    assert len(cache) == 3


def test_storing_a_key_again_makes_it_the_newest() -> None:
    cache: Cache[str, int] = Cache(3)
    for n, key in enumerate("abc"):
        cache.put(key, n)
    cache.put("a", 9)  # "b" is now the one stored longest ago
    cache.get("b")  # a lookup does not reorder
    cache.put("d", 3)
    assert cache.get("b") is None
    assert [cache.get(k) for k in "acd"] == [9, 2, 3]


def test_pop_and_clear_forget() -> None:
    cache: Cache[str, int] = Cache(3)
    cache.put("a", 1)
    cache.put("b", 2)
    cache.pop("a")
    cache.pop("never")  # not held: nothing to do
    assert cache.get("a") is None and cache.get("b") == 2 and len(cache) == 1
    cache.clear()
    assert len(cache) == 0 and cache.get("b") is None


def test_a_default_tells_a_remembered_none_from_a_miss() -> None:
    miss = object()
    cache: Cache[str, int | None] = Cache(2)
    cache.put("nobody", None)
    assert cache.get("nobody", miss) is None
    assert cache.get("unknown", miss) is miss


def test_values_expire_after_the_ttl_and_are_dropped() -> None:
    clock = FakeClock()
    cache: Cache[str, int] = Cache(10, ttl=60, clock=clock)
    cache.put("a", 1)
    clock.now += 59.9
    assert cache.get("a") == 1
    clock.now += 0.1
    assert cache.get("a") is None
    assert len(cache) == 0  # met by the lookup, so gone
    cache.put("a", 2)  # stored again: a fresh ttl
    clock.now += 30
    assert cache.get("a") == 2


def test_the_ttl_counts_from_since_when_given() -> None:
    clock = FakeClock()
    cache: Cache[str, int] = Cache(10, ttl=60, clock=clock)
    asked = clock.now
    clock.now += 10  # the answer took this long to come
    cache.put("a", 1, since=asked)
    clock.now += 49.9
    assert cache.get("a") == 1
    clock.now += 0.1
    assert cache.get("a") is None


def test_a_value_stored_at_a_time_not_yet_reached_is_not_trusted() -> None:
    clock = FakeClock()
    cache: Cache[str, int] = Cache(10, ttl=60, clock=clock)
    cache.put("a", 1)
    clock.now -= 3600  # a wall clock set back: the value would otherwise live an hour more
    assert cache.get("a") is None
    assert len(cache) == 0


def test_without_a_ttl_values_never_expire_and_the_clock_is_not_read() -> None:
    def clock() -> float:
        raise AssertionError("no ttl, no clock")

    cache: Cache[str, int] = Cache(2, clock=clock)
    cache.put("a", 1)
    assert cache.get("a") == 1


def test_a_cache_stays_bounded_under_many_writers() -> None:
    cache: Cache[tuple[int, int], int] = Cache(100, ttl=3600)

    def write(thread: int) -> None:
        for n in range(5_000):
            cache.put((thread, n), n)
            cache.get((thread, n - 1))
            if n % 7 == 0:
                cache.pop((thread, n - 3))

    threads = [threading.Thread(target=write, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(cache) == 100
    # The newest entries survive: each writer's last put is the newest of its own.
    assert sum(cache.get((t, 4_999)) == 4_999 for t in range(4)) >= 1


def test_a_cache_needs_room() -> None:
    with pytest.raises(ValueError):
        Cache(0)


def _hand_made_caches(path: Path) -> list[str]:
    """What in one module keeps a cache of its own: an OrderedDict, or the calls that
    make a dict one (reordering, dropping the oldest)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module == "collections":
            found.extend(f"import {a.name}" for a in node.names if a.name == "OrderedDict")
        elif isinstance(node, ast.Attribute) and node.attr in {"OrderedDict", "move_to_end"}:
            found.append(node.attr)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "popitem"
            and any(k.arg == "last" for k in node.keywords)
        ):
            found.append("popitem(last=...)")
    return found


def test_no_cache_is_kept_but_in_the_one_cache() -> None:
    found = {
        str(path.relative_to(ROOT)): uses
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        if (uses := _hand_made_caches(path))
    }
    assert set(found) == {"authcore/cache.py"}, found
