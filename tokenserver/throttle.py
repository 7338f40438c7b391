"""Failed-login throttling per account and per client address.

Failures are counted in a sliding window; once an account (or address) has
`limit` failures inside it, further attempts are refused without checking the
password — so a throttled account does not tell whether a guess was right —
until the oldest failure leaves the window. A successful login clears the
account's failures (not the address's: one good account must not launder an
address that is guessing at others).

Counts live in this process; several instances each count on their own.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable

__all__ = ["LoginThrottle"]

MAX_TRACKED = 100_000


class _Window:
    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after(self, key: str, now: float) -> float:
        failures = self._failures.get(key)
        if failures is None:
            return 0.0
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        if not failures:
            del self._failures[key]
            return 0.0
        if len(failures) < self.limit:
            return 0.0
        return failures[-self.limit] + self.window - now

    def fail(self, key: str, now: float) -> None:
        failures = self._failures.get(key)
        if failures is None:
            failures = self._failures[key] = deque(maxlen=self.limit)
        failures.append(now)
        self._failures.move_to_end(key)
        while len(self._failures) > MAX_TRACKED:
            self._failures.popitem(last=False)

    def clear(self, key: str) -> None:
        self._failures.pop(key, None)


class LoginThrottle:
    def __init__(
        self,
        account_limit: int,
        address_limit: int,
        window: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._accounts = _Window(account_limit, window)
        self._addresses = _Window(address_limit, window)
        self._clock = clock
        self._lock = threading.Lock()

    def retry_after(self, account: str, address: str | None) -> int:
        """Whole seconds to wait before trying again; 0 when not throttled."""
        now = self._clock()
        with self._lock:
            wait = self._accounts.retry_after(account, now)
            if address:
                wait = max(wait, self._addresses.retry_after(address, now))
        return math.ceil(wait) if wait > 0 else 0

    def failure(self, account: str, address: str | None) -> None:
        now = self._clock()
        with self._lock:
            self._accounts.fail(account, now)
            if address:
                self._addresses.fail(address, now)

    def success(self, account: str) -> None:
        with self._lock:
            self._accounts.clear(account)
