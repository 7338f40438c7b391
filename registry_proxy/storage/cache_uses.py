"""When upstream content cached here was last used: `_proxycache/<name>/<kind>/<alg>/<hex>/used`.

Storage already says when a cached layer or manifest came (its link's modification
time: the link is written when the content is fetched, and only then) and how large it
is (its blob). What it does not say is when it was last served: an instance records
that with a plain put, at most once per (repository, digest) per `every`, so serving
from the cache costs one write in ten minutes at most. Two instances writing at once
leave one of two close times; a record lost (kill -9 before the put) or unreadable
counts as the link's time. The tree is outside `repositories/`, so the Go registry
never lists it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Callable

from registry_proxy.reference import Digest
from registry_proxy.storage import paths
from registry_proxy.storage.driver import DriverError, StorageDriver
from registry_proxy.storage.errors import StorageError

__all__ = ["EVERY", "LAYER", "MANIFEST", "CacheUses", "last_used"]

LAYER = "_layers"
MANIFEST = "_manifests"
# How stale a recorded use may be: eviction orders by it, it need not be to the second.
EVERY = dt.timedelta(minutes=10)
# A record is one timestamp; anything longer is not one.
MAX_RECORD = 256
# Remembered writes, past which the memory starts over (a few more writes, no more).
MAX_REMEMBERED = 100_000


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class CacheUses:
    """Records that this instance served cached content (throttled per instance)."""

    def __init__(
        self,
        driver: StorageDriver,
        clock: Callable[[], dt.datetime] = _utcnow,
        every: dt.timedelta = EVERY,
    ) -> None:
        self._driver = driver
        self._clock = clock
        self._every = every
        self._written: dict[tuple[str, str, Digest], dt.datetime] = {}

    async def used(self, repo: str, kind: str, digest: Digest) -> None:
        now = self._clock()
        key = (repo, kind, digest)
        last = self._written.get(key)
        if last is not None and dt.timedelta(0) <= now - last < self._every:
            return
        if len(self._written) >= MAX_REMEMBERED:
            self._written.clear()
        self._written[key] = now
        # Bookkeeping: a store that cannot take it must not fail the pull it follows.
        with contextlib.suppress(StorageError, DriverError):
            await self._driver.put_content(
                paths.proxycache_used(repo, kind, digest), now.isoformat().encode("ascii")
            )


async def last_used(
    driver: StorageDriver, repo: str, kind: str, digest: Digest
) -> dt.datetime | None:
    """The recorded time of last use; None when there is no readable record."""
    try:
        content = await driver.get_content(paths.proxycache_used(repo, kind, digest), MAX_RECORD)
        moment = dt.datetime.fromisoformat(content.decode("ascii").strip())
    except (StorageError, DriverError, UnicodeDecodeError, ValueError):
        return None
    return moment if moment.tzinfo is not None else None
