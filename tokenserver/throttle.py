"""Failed-login throttling per account and per client address.

Failures are counted in a sliding window; once an account (or address) has
`limit` failures inside it, further attempts are refused without checking the
password — so a throttled account does not tell whether a guess was right —
until the oldest failure leaves the window. A successful login clears the
account's failures (not the address's: one good account must not launder an
address that is guessing at others).

An IPv4 client is counted by its address, an IPv6 client by its network of
`ipv6_prefix` bits (a /64 by default): one subscriber or host commonly holds a
whole /64 and can send from any of its 2^64 addresses, so per address its
limit would be no limit. An IPv4-mapped IPv6 address is its IPv4 address.

The failures live in the database (`store/login_failures.py`), so every
instance on one database counts the same ones. A check is one indexed read;
a successful login writes only when that read found failures of the account
to clear, so the warm path costs no write. A refused attempt is not counted,
so an account or address holds at most about `limit` rows; failures older
than the window are ignored and purged now and then. What anyone can make
the server store is thus bounded by the failures they can cause, each of
which costs a password check, within one window.

What a check read is remembered for `FRESH` seconds, so that `peek` can
answer the warm path on the event loop without a database read. This
process's own failures and clears forget what it remembered of their keys at
once; failures recorded by another instance (or worker) count here within
`FRESH` seconds, as if their requests had raced with ours.

Instances compare their own wall clocks; keep them in step (NTP) or a
failure counts a little longer or shorter on another instance.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy.exc import SQLAlchemyError

from authcore.cache import Cache
from tokenserver.store.login_failures import LoginFailureStore

__all__ = ["DEFAULT_IPV6_PREFIX", "LoginThrottle", "Standing", "ThrottleUnavailable"]

log = logging.getLogger(__name__)

ACCOUNT = "account:"
ADDRESS = "address:"
PURGE_EVERY = 60.0
# Seconds what a check read of a key's failures stands in for a fresh read.
FRESH = 1.0
MAX_REMEMBERED = 10_000
# The smallest network one host holds: its 64-bit interface identifiers (RFC 4291)
# are what SLAAC and privacy addresses choose freely.
DEFAULT_IPV6_PREFIX = 64


class ThrottleUnavailable(Exception):
    """The failure counts could not be read or written (the database is down)."""


@dataclass(frozen=True)
class Standing:
    """What one check found: the wait, and whether a success has anything to clear."""

    retry_after: int  # whole seconds; 0 when not throttled
    account_failures: int


@functools.lru_cache(maxsize=4096)
def address_key(address: str, ipv6_prefix: int = DEFAULT_IPV6_PREFIX) -> str:
    """The key a client address's failures count under, however the address was written."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return ADDRESS + address
    if isinstance(ip, ipaddress.IPv4Address):
        return ADDRESS + str(ip)
    if ip.ipv4_mapped is not None:  # an IPv4 client of a dual-stack socket
        return ADDRESS + str(ip.ipv4_mapped)
    # From the integer, so a zone (`fe80::1%eth0`) does not make a network of its own.
    network = ipaddress.IPv6Network((int(ip), ipv6_prefix), strict=False)
    return ADDRESS + str(network)


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
        *,
        ipv6_prefix: int = DEFAULT_IPV6_PREFIX,
    ) -> None:
        if not 0 <= ipv6_prefix <= 128:
            raise ValueError(f"an IPv6 prefix length is 0 to 128, not {ipv6_prefix}")
        self._store = store
        self._ipv6_prefix = ipv6_prefix
        self._account_limit = account_limit
        self._address_limit = address_limit
        self._window = window
        self._clock = clock
        self._purge_every = min(window, PURGE_EVERY)
        # Only paces this instance's purges; the counts never depend on it.
        self._next_purge = 0.0
        # key -> the failure times read, for a second from the read: what `peek` answers from.
        self._read: Cache[str, tuple[float, ...]] = Cache(MAX_REMEMBERED, ttl=FRESH, clock=clock)

    def _standing(
        self, by_account: Sequence[float], by_address: Sequence[float], now: float
    ) -> Standing:
        wait = max(
            _wait(by_account, self._account_limit, self._window, now),
            _wait(by_address, self._address_limit, self._window, now),
        )
        return Standing(math.ceil(wait) if wait > 0 else 0, len(by_account))

    def _recent(self, key: str, now: float) -> tuple[float, ...] | None:
        times = self._read.get(key)
        if times is None:
            return None
        since = now - self._window
        return tuple(at for at in times if at > since)

    def peek(self, account: str, address: str | None) -> Standing | None:
        """The standing from what a recent check read (never blocks); None if it must be read."""
        now = self._clock()
        by_account = self._recent(ACCOUNT + account, now)
        by_address = self._recent(self.network_of(address), now) if address else ()
        if by_account is None or by_address is None:
            return None
        return self._standing(by_account, by_address, now)

    def network_of(self, address: str) -> str:
        """`address` as its failures are counted: itself, or an IPv6 one's network."""
        return address_key(address, self._ipv6_prefix)

    def _remember(self, key: str, times: list[float], now: float) -> None:
        self._read.put(key, tuple(times), since=now)

    def _forget(self, keys: Sequence[str]) -> None:
        for key in keys:
            self._read.pop(key)

    def check(self, account: str, address: str | None) -> Standing:
        """Raises ThrottleUnavailable when the counts cannot be read."""
        now = self._clock()
        account_key = ACCOUNT + account
        client_key = self.network_of(address) if address else None
        try:
            rows = self._store.recent(account_key, client_key, now - self._window)
        except SQLAlchemyError as exc:
            raise ThrottleUnavailable(type(exc).__name__) from None
        by_account = [at for key, at in rows if key == account_key]
        by_address = [at for key, at in rows if key == client_key]
        self._remember(account_key, by_account, now)
        if client_key is not None:
            self._remember(client_key, by_address, now)
        return self._standing(by_account, by_address, now)

    def retry_after(self, account: str, address: str | None) -> int:
        """Whole seconds to wait before trying again; 0 when not throttled."""
        return self.check(account, address).retry_after

    def failure(self, account: str | None, address: str | None) -> None:
        """Count a failure (against the address alone when `account` is None).

        Raises ThrottleUnavailable when it cannot be recorded.
        """
        now = self._clock()
        keys = [] if account is None else [ACCOUNT + account]
        if address:
            keys.append(self.network_of(address))
        if not keys:
            return
        self._forget(keys)
        try:
            self._store.add(keys, now)
        except SQLAlchemyError as exc:
            raise ThrottleUnavailable(type(exc).__name__) from None
        finally:
            # Again after the write: a check that raced with it may have read too early.
            self._forget(keys)
        if now >= self._next_purge:
            self._next_purge = now + self._purge_every
            self._purge(now)

    def success(self, account: str, standing: Standing | None = None) -> None:
        """Clear the account's failures; given the check's standing, only if it saw any."""
        if standing is not None and standing.account_failures == 0:
            return
        try:
            self._store.clear(ACCOUNT + account)
            self._forget([ACCOUNT + account])
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
