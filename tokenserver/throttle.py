"""Failed-login throttling per account and per client address.

Failures are counted in a sliding window; once an account (or address) has
`limit` failures inside it, further attempts are refused without checking the
password — so a throttled account does not tell whether a guess was right —
until the oldest failure leaves the window. A successful login clears the
account's failures (not the address's: one good account must not launder an
address that is guessing at others).

The failures live in the database (`store/login_failures.py`), so every
instance on one database counts the same ones. A check is one indexed read;
a successful login writes only when that read found failures of the account
to clear, so the warm path costs no write. A refused attempt is not counted,
so an account or address holds at most about `limit` rows; failures older
than the window are ignored and purged now and then. What anyone can make
the server store is thus bounded by the failures they can cause, each of
which costs a password check, within one window.

Instances compare their own wall clocks; keep them in step (NTP) or a
failure counts a little longer or shorter on another instance.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy.exc import SQLAlchemyError

from tokenserver.store.login_failures import LoginFailureStore

__all__ = ["LoginThrottle", "Standing", "ThrottleUnavailable"]

log = logging.getLogger(__name__)

ACCOUNT = "account:"
ADDRESS = "address:"
PURGE_EVERY = 60.0


class ThrottleUnavailable(Exception):
    """The failure counts could not be read or written (the database is down)."""


@dataclass(frozen=True)
class Standing:
    """What one check found: the wait, and whether a success has anything to clear."""

    retry_after: int  # whole seconds; 0 when not throttled
    account_failures: int


def _address_key(address: str) -> str:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return ADDRESS + address
    # One host, one key, however the address was written.
    mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
    return ADDRESS + str(mapped or ip)


def _wait(times: Sequence[float], limit: int, window: float, now: float) -> float:
    if len(times) < limit:
        return 0.0
    return sorted(times)[-limit] + window - now


class LoginThrottle:
    def __init__(
        self,
        store: LoginFailureStore,
        account_limit: int,
        address_limit: int,
        window: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._account_limit = account_limit
        self._address_limit = address_limit
        self._window = window
        self._clock = clock
        self._purge_every = min(window, PURGE_EVERY)
        # Only paces this instance's purges; the counts never depend on it.
        self._next_purge = 0.0

    def check(self, account: str, address: str | None) -> Standing:
        """Raises ThrottleUnavailable when the counts cannot be read."""
        now = self._clock()
        account_key = ACCOUNT + account
        address_key = _address_key(address) if address else None
        try:
            rows = self._store.recent(account_key, address_key, now - self._window)
        except SQLAlchemyError as exc:
            raise ThrottleUnavailable(type(exc).__name__) from None
        by_account = [at for key, at in rows if key == account_key]
        by_address = [at for key, at in rows if key == address_key]
        wait = max(
            _wait(by_account, self._account_limit, self._window, now),
            _wait(by_address, self._address_limit, self._window, now),
        )
        return Standing(math.ceil(wait) if wait > 0 else 0, len(by_account))

    def retry_after(self, account: str, address: str | None) -> int:
        """Whole seconds to wait before trying again; 0 when not throttled."""
        return self.check(account, address).retry_after

    def failure(self, account: str, address: str | None) -> None:
        """Count a failure; raises ThrottleUnavailable when it cannot be recorded."""
        now = self._clock()
        keys = [ACCOUNT + account]
        if address:
            keys.append(_address_key(address))
        try:
            self._store.add(keys, now)
        except SQLAlchemyError as exc:
            raise ThrottleUnavailable(type(exc).__name__) from None
        if now >= self._next_purge:
            self._next_purge = now + self._purge_every
            self._purge(now)

    def success(self, account: str, standing: Standing | None = None) -> None:
        """Clear the account's failures; given the check's standing, only if it saw any."""
        if standing is not None and standing.account_failures == 0:
            return
        try:
            self._store.clear(ACCOUNT + account)
        except SQLAlchemyError as exc:
            # The login stands; the failures left behind expire with the window.
            log.warning("login failures not cleared", extra={"reason": type(exc).__name__})

    def _purge(self, now: float) -> None:
        try:
            purged = self._store.purge(now - self._window)
        except SQLAlchemyError as exc:
            log.error("login failure purge failed", extra={"reason": type(exc).__name__})
            return
        if purged:
            log.info("expired login failures purged", extra={"failures": purged})
