"""Writes audit records: token requests in batches off the request path, acts at once.

A token request only appends its record to a queue (`AuditLog.record`: one
`deque.append`, no lock, so the event loop never waits on the writer); one
thread wakes every `INTERVAL` seconds and writes whatever gathered, in
transactions of up to `BATCH` rows, each one INSERT of the rows as one JSON
document (`store/bulk_insert.py`: no ORM objects, little Python per row). A record
therefore waits at most about `INTERVAL` plus one write before it is in the
database, which is what `audit tail` sees. A crash (SIGKILL) loses only what the last wake-up had not committed;
a shutdown (SIGTERM, the app's lifespan ending) writes everything recorded
before it returns, and a record that comes later still (a request that
outlived the shutdown's grace period) is written by its caller. `flush`
waits for the rows of everything recorded before it was called. Records
older than the retention are purged by another thread in bounded chunks, so
a large purge does not hold the trail up for long. A failed write is logged
(the records, which hold no secret, are counted) and the trail carries on.

An administrative act is rare and matters more: `AdminTrail` writes its
record before the act is answered.
"""

from __future__ import annotations

import collections
import datetime as dt
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.exc import SQLAlchemyError

from tokenserver.store.audit import OUTCOMES, TOKEN_ACTION, AuditRecord, AuditStore, Outcome

# The records' vocabulary too, so front ends need not reach into the store for it.
__all__ = [
    "OUTCOMES",
    "TOKEN_ACTION",
    "Actor",
    "AdminTrail",
    "AuditLog",
    "AuditRecord",
    "Outcome",
]

log = logging.getLogger(__name__)

# Rows per transaction: enough that one wake-up keeps up with thousands of
# requests a second, few enough that one transaction stays short.
BATCH = 5000
# Seconds between the writer's wake-ups: a few a second, so each commit
# carries many rows, and well inside the second a row may take to show.
INTERVAL = 0.25
PURGE_EVERY = 3600.0
PURGE_CHUNK = 10_000


class AuditLog:
    def __init__(
        self,
        store: AuditStore,
        retention: dt.timedelta,
        clock: Callable[[], dt.datetime],
        *,
        max_queue: int = 100_000,
        interval: float = INTERVAL,
    ) -> None:
        self._store = store
        self._retention = retention
        self._clock = clock
        self._max_queue = max_queue
        self._interval = interval
        # Appended by request handlers, popped by the writer: both atomic, no lock.
        self._queue: collections.deque[AuditRecord] = collections.deque()
        self._dropped = 0
        self._closed = False
        # `flush` callers waiting for the next pass, and the lock of that list only.
        self._waiters: list[threading.Event] = []
        self._waiters_lock = threading.Lock()
        self._stop = threading.Event()
        # Set by `flush` and `close`: whoever waits for the rows cuts the interval short.
        self._hurry = threading.Event()
        # The first purge waits for the first write: a server's start is busy enough.
        self._written = threading.Event()
        # One writer at a time: the thread, or (after close) a late caller.
        self._writing = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
        self._purger = threading.Thread(target=self._purge_loop, name="audit-purger", daemon=True)
        self._thread.start()
        self._purger.start()

    def record(self, record: AuditRecord) -> None:
        if len(self._queue) >= self._max_queue:
            self._dropped += 1
            log.error("audit queue full; record dropped", extra={"dropped": self._dropped})
            return
        self._queue.append(record)
        # Read after the append: either the writer's last pass (which starts
        # after `_closed` is set) pops this record, or we write it ourselves.
        if self._closed:
            self._pass()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything recorded so far is written (or the timeout passes)."""
        if self._closed:
            self._pass()
            return True
        done = threading.Event()
        with self._waiters_lock:
            self._waiters.append(done)
        if self._closed:  # the writer may have made its last pass already
            self._pass()
        self._hurry.set()
        return done.wait(timeout)

    def close(self) -> None:
        """Write everything recorded so far and stop (at shutdown)."""
        self._stop.set()
        self._written.set()
        self._hurry.set()
        self._thread.join(timeout=30)
        self._purger.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._hurry.wait(self._interval)
            self._hurry.clear()
            self._pass()
        # From here on `record` writes for itself; what was queued before goes now.
        self._closed = True
        self._pass()

    def _pass(self) -> None:
        """Write everything queued, then wake whoever flushed before the pass began."""
        with self._waiters_lock:
            waiters, self._waiters = self._waiters, []
        with self._writing:
            while self._queue:
                batch: list[AuditRecord] = []
                pop = self._queue.popleft
                try:
                    while len(batch) < BATCH:
                        batch.append(pop())
                except IndexError:
                    pass
                self._write(batch)
                self._written.set()
        for done in waiters:
            done.set()

    def _write(self, batch: list[AuditRecord]) -> None:
        try:
            self._store.add(batch)
        except Exception as exc:  # whatever the cause, the trail must carry on
            log.error(
                "audit records not written",
                extra={"records": len(batch), "reason": type(exc).__name__},
            )

    def _purge_loop(self) -> None:
        self._written.wait()
        while not self._stop.is_set():
            self.purge_expired()
            self._stop.wait(PURGE_EVERY)

    def purge_expired(self) -> int:
        """Delete records older than the retention; the number deleted."""
        before = self._clock() - self._retention
        purged = 0
        try:
            while True:
                deleted = self._store.purge(before, limit=PURGE_CHUNK)
                purged += deleted
                if deleted < PURGE_CHUNK or self._stop.is_set():
                    break
        except SQLAlchemyError as exc:
            log.error("audit purge failed", extra={"reason": type(exc).__name__})
        if purged:
            log.info("audit records purged", extra={"records": purged})
        return purged


@dataclass(frozen=True)
class Actor:
    """Who performs an administrative act, and how they proved it (`basic`, `bearer`, `cli`).

    `kind` is `user` for an account of ours, `local` for whoever runs the CLI on
    the server (their login name, vouched for by access to the database).
    """

    subject: str
    via: str
    kind: str = "user"
    backend: str = ""
    client_ip: str = ""
    user_agent: str = ""

    def record(self, at: dt.datetime, action: str, target: str, outcome: Outcome) -> AuditRecord:
        return AuditRecord(
            at=at,
            subject=self.subject,
            kind=self.kind,
            backend=self.backend,
            via=self.via,
            client_ip=self.client_ip,
            user_agent=self.user_agent,
            service="",
            requested="",
            granted="",
            outcome=outcome,
            action=action,
            target=target,
        )


class AdminTrail:
    """Records administrative acts synchronously (the caller waits for the row)."""

    def __init__(self, store: AuditStore, clock: Callable[[], dt.datetime]) -> None:
        self._store = store
        self._clock = clock

    def record(self, actor: Actor, action: str, target: str, outcome: Outcome) -> None:
        try:
            self._store.add([actor.record(self._clock(), action, target, outcome)])
        except SQLAlchemyError as exc:
            # The act itself has happened (or failed) already; say loudly that it went unrecorded.
            log.error(
                "administrative act not recorded",
                extra={"action": action, "outcome": outcome, "reason": type(exc).__name__},
            )
