"""The bounded memo: answers what was put, holds at most its size, drops the oldest first."""

from __future__ import annotations

import threading

import pytest

from authcore.memo import Memo


def test_a_memo_answers_what_was_put_and_nothing_else() -> None:
    memo: Memo[str, int] = Memo(4)
    assert memo.get("a") is None
    assert memo.put("a", 1) == 1
    assert memo.get("a") == 1
    assert memo.get("b") is None
    memo.put("a", 2)  # a new value for a key replaces the old, no second entry
    assert memo.get("a") == 2 and len(memo) == 1


def test_a_full_memo_drops_its_oldest_entry() -> None:
    memo: Memo[int, int] = Memo(3)
    for key in range(3):
        memo.put(key, key * 10)
    memo.put(3, 30)
    assert memo.get(0) is None
    assert [memo.get(k) for k in (1, 2, 3)] == [10, 20, 30]
    assert len(memo) == 3


def test_a_memo_stays_bounded_under_many_writers() -> None:
    memo: Memo[tuple[int, int], int] = Memo(100)

    def write(thread: int) -> None:
        for n in range(5_000):
            memo.put((thread, n), n)
            memo.get((thread, n - 1))

    threads = [threading.Thread(target=write, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(memo) == 100
    # The newest entries survive: each writer's last put is the newest of its own.
    assert sum(memo.get((t, 4_999)) == 4_999 for t in range(4)) >= 1


def test_a_memo_needs_room() -> None:
    with pytest.raises(ValueError):
        Memo(0)
