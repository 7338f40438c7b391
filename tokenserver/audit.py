"""Writes audit records: token requests in batches off the request path, acts at once.

A token request only puts its record on a queue (`AuditLog`); one thread
writes what has gathered in one transaction, so the warm token path does not
wait for a database commit. The writer holds a record back at most `GATHER`
seconds, so that one commit carries many (a commit per request took a third
of the server's CPU on SQLite, one request at a time), and under load each
transaction takes all that arrived during the last one. So a crash (SIGKILL) loses only what the
last write had not committed, well under a second's worth; a shutdown
(SIGTERM, the app's lifespan ending) writes everything recorded before it
returns, and a record that comes later still (a request that outlived the
shutdown's grace period) is written at once by its caller. Records older
than the retention are purged by another thread in bounded chunks, so a
large purge does not hold the trail up for long. A failed write is logged (the records,
which hold no secret, are counted) and the trail carries on.

An administrative act is rare and matters more: `AdminTrail` writes its
record before the act is answered.
"""

from __future__ import annotations

import datetime as dt
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.exc import SQLAlchemyError

from tokenserver.store.audit import AuditRecord, AuditStore, Outcome

__all__ = ["Actor", "AdminTrail", "AuditLog"]

log = logging.getLogger(__name__)

# Rows per transaction: enough that the writer keeps up with thousands of
# requests a second, few enough that one transaction stays short.
BATCH = 5000
# Seconds the writer waits after a first record for others to join it.
GATHER = 0.1
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
    ) -> None:
        self._store = store
        self._retention = retention
        self._clock = clock
        self._queue: queue.Queue[AuditRecord | None] = queue.Queue(max_queue)
        # Guards `_pending` and `_closed`; `record` also enqueues under it, so
        # nothing can slip in behind the writer's last drain.
        self._idle = threading.Condition()
        self._pending = 0
        self._dropped = 0
        self._closed = False
        self._stop = threading.Event()
        # Set by `flush` and `close`: whoever waits for the rows cuts the gathering short.
        self._hurry = threading.Event()
        # The first purge waits for the first write: a server's start is busy enough.
        self._written = threading.Event()
        self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
        self._purger = threading.Thread(target=self._purge_loop, name="audit-purger", daemon=True)
        self._thread.start()
        self._purger.start()

    def record(self, record: AuditRecord) -> None:
        with self._idle:
            if self._closed:
                late = True
            else:
                late = False
                try:
                    self._queue.put_nowait(record)
                except queue.Full:
                    self._dropped += 1
                else:
                    self._pending += 1
                    return
        if late:
            self._write([record], queued=False)
        else:
            log.error("audit queue full; record dropped", extra={"dropped": self._dropped})

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything recorded so far is written (or the timeout passes)."""
        self._hurry.set()
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def close(self) -> None:
        """Write everything recorded so far and stop (at shutdown)."""
        self._stop.set()
        self._written.set()
        self._hurry.set()
        self._queue.put(None)
        self._thread.join(timeout=30)
        self._purger.join(timeout=5)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                break
            self._hurry.wait(GATHER)
            self._hurry.clear()
            batch = [item]
            stop = False
            while len(batch) < BATCH:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                batch.append(more)
            self._write(batch)
            self._written.set()
            if stop:
                break
        self._drain()

    def _drain(self) -> None:
        # From here on `record` writes for itself; what was queued before goes now.
        with self._idle:
            self._closed = True
        batch: list[AuditRecord] = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                batch.append(item)
            if len(batch) >= BATCH:
                self._write(batch)
                batch = []
        if batch:
            self._write(batch)

    def _write(self, batch: list[AuditRecord], *, queued: bool = True) -> None:
        try:
            self._store.add(batch)
        except SQLAlchemyError as exc:
            log.error(
                "audit records not written",
                extra={"records": len(batch), "reason": type(exc).__name__},
            )
        finally:
            if queued:
                with self._idle:
                    self._pending -= len(batch)
                    self._idle.notify_all()

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
