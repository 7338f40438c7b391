"""Writes audit records: token requests in batches off the request path, acts at once.

A token request only puts its record on a queue (`AuditLog`); one thread
writes what has gathered in one transaction, so the warm token path does not
wait for a database commit. Records older than the retention are purged now
and then. A failed write is logged (the records, which hold no secret, are
counted) and the trail carries on.

An administrative act is rare and matters more: `AdminTrail` writes its
record before the act is answered.
"""

from __future__ import annotations

import datetime as dt
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.exc import SQLAlchemyError

from tokenserver.store.audit import AuditRecord, AuditStore, Outcome

__all__ = ["Actor", "AdminTrail", "AuditLog"]

log = logging.getLogger(__name__)

BATCH = 500
PURGE_EVERY = 3600.0


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
        self._idle = threading.Condition()
        self._pending = 0
        self._dropped = 0
        self._last_purge: float | None = None
        self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
        self._thread.start()

    def record(self, record: AuditRecord) -> None:
        with self._idle:
            self._pending += 1
        try:
            self._queue.put_nowait(record)
        except queue.Full:
            with self._idle:
                self._pending -= 1
                self._dropped += 1
                self._idle.notify_all()
            log.error("audit queue full; record dropped", extra={"dropped": self._dropped})

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything recorded so far is written (or the timeout passes)."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            batch: list[AuditRecord] = []
            stop = item is None
            if item is not None:
                batch.append(item)
            while not stop and len(batch) < BATCH:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                else:
                    batch.append(more)
            self._write(batch)
            self._maybe_purge()
            if stop:
                return

    def _write(self, batch: list[AuditRecord]) -> None:
        try:
            self._store.add(batch)
        except SQLAlchemyError as exc:
            log.error(
                "audit records not written",
                extra={"records": len(batch), "reason": type(exc).__name__},
            )
        finally:
            with self._idle:
                self._pending -= len(batch)
                self._idle.notify_all()

    def _maybe_purge(self) -> None:
        now = time.monotonic()
        if self._last_purge is not None and now - self._last_purge < PURGE_EVERY:
            return
        self._last_purge = now
        self.purge_expired()

    def purge_expired(self) -> int:
        """Delete records older than the retention; the number deleted."""
        try:
            purged = self._store.purge(self._clock() - self._retention)
        except SQLAlchemyError as exc:
            log.error("audit purge failed", extra={"reason": type(exc).__name__})
            return 0
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
