"""JSON log lines on stderr, each carrying the current request's context keys.

Lines are formatted and written by a thread of their own (a `QueueHandler`
feeding a writer that takes whatever has gathered, formats it and writes it
in one call), so a request on the event loop pays only for making the record
and appending it to a queue. The writer wakes at most every `INTERVAL`
seconds: a thread that woke for every line would contend for the
interpreter with the event loop at each of the loop's system calls, which
cost a busy server more than the lines themselves. The context keys are read when the
record is made, in the request's own context, and travel on the record
(`record.context`): the writer runs in no request's context. The writer
writes what is queued before the process exits (`stop_logging`, also at
interpreter exit), and a fork (a worker process) gets a writer of its own.
"""

from __future__ import annotations

import atexit
import datetime as dt
import functools
import json
import logging
import logging.handlers
import os
import queue
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

from authcore.context import ContextKey, current_values

__all__ = ["ContextFilter", "JSONFormatter", "configure_logging", "stop_logging"]


class ContextFilter(logging.Filter):
    """Copies the current request's context onto each record as `record.context`."""

    def __init__(self, keys: Sequence[ContextKey[Any]]) -> None:
        super().__init__()
        self.keys = keys

    def filter(self, record: logging.LogRecord) -> bool:
        values = current_values()
        record.context = {
            key.log_field: key.render(value)
            for key in self.keys
            if (value := values.get(key.log_field)) is not None
        }
        return True


# Also dropped: uvicorn's ANSI-coloured copy of its message.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "context",
    "color_message",
}


class JSONFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__()
        # The time to the second changes once a second: format it once.
        self._second = -1
        self._stamp = ""

    def _time(self, created: float) -> str:
        second = int(created)
        if second != self._second:
            self._stamp = dt.datetime.fromtimestamp(second, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
            self._second = second
        return f"{self._stamp}.{int((created - second) * 1000):03d}+00:00"

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self._time(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry |= getattr(record, "context", {})
        entry |= {k: v for k, v in vars(record).items() if k not in _STANDARD}
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class _Enqueue(logging.handlers.QueueHandler):
    """Queues the record itself for the pipe's writer, which formats and writes it."""

    def __init__(self, pipe: _Pipe) -> None:
        super().__init__(pipe.queue)
        self.pipe = pipe

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        # The message's arguments are rendered now, while they still say what they said.
        record.msg = record.getMessage()
        record.args = None
        return record


_STOP = logging.LogRecord("", 0, "", 0, "stop", None, None)
# Lines per write: each wake-up writes what has gathered, this many lines a call.
_BATCH = 512
# The longest a line waits in the queue (plus the time to write what came before it).
INTERVAL = 0.02


class _Pipe:
    """The queue, its handler on the root logger, and the thread that formats and writes.

    The thread sleeps until a line comes, lets `INTERVAL` pass, and writes
    what has gathered by then, so a busy server pays a wake-up and a write per
    batch, not per line.
    """

    def __init__(self, keys: Sequence[ContextKey[Any]]) -> None:
        self.stream = sys.stderr
        self.formatter = JSONFormatter()
        self.queue: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
        self.handler = _Enqueue(self)
        self.handler.addFilter(ContextFilter(keys))
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        if self.thread is None:
            self.thread = threading.Thread(target=self._run, name="log-writer", daemon=True)
            self.thread.start()

    def stop(self) -> None:
        """Write everything queued so far and stop the thread (idempotent)."""
        if self.thread is not None:
            self.queue.put(_STOP)
            self.thread.join()
            self.thread = None
        while batch := self._take():  # whatever came after the stop
            self._write(batch)

    def forked(self) -> None:
        # The child has the parent's queue but no thread: what was queued
        # before the fork the parent wrote (`stop` runs before a fork).
        self.queue = queue.SimpleQueue()
        self.handler.queue = self.queue
        self.thread = None
        self.start()

    def _take(self) -> list[logging.LogRecord]:
        batch: list[logging.LogRecord] = []
        while len(batch) < _BATCH:
            try:
                batch.append(self.queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _run(self) -> None:
        while True:
            first = self.queue.get()
            if first is not _STOP:
                time.sleep(INTERVAL)
            batch = [first, *self._take()]
            while True:
                self._write(batch)
                if any(record is _STOP for record in batch):
                    return
                if len(batch) < _BATCH:
                    break
                batch = self._take()

    def _write(self, batch: list[logging.LogRecord]) -> None:
        lines = []
        for record in batch:
            if record is _STOP:
                continue
            try:
                lines.append(self.formatter.format(record))
            except Exception:
                self.handler.handleError(record)
        if lines:
            try:
                self.stream.write("\n".join(lines) + "\n")
                self.stream.flush()
            except Exception:
                self.handler.handleError(batch[0])


def _pipes() -> list[_Pipe]:
    return [h.pipe for h in logging.getLogger().handlers if isinstance(h, _Enqueue)]


def configure_logging(level: str, keys: Sequence[ContextKey[Any]]) -> None:
    """JSON lines on stderr for this process (a server's: call once, at start)."""
    stop_logging()
    # Nothing the JSON lines show: not worth a lookup on every record.
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    # Nor the caller's file, line and function: skips a walk up the stack per
    # record (the logging HOWTO's own switch for it).
    logging._srcfile = None
    pipe = _Pipe(keys)
    root = logging.getLogger()
    root.handlers[:] = [pipe.handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").disabled = True
    # httpx logs every URL it fetches at INFO, query included: an upstream registry's
    # redirect to signed storage URLs (a signature, an access key id) would be logged.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    pipe.start()
    _register_hooks()


def stop_logging() -> None:
    """Write every queued line now (at exit; idempotent)."""
    for pipe in _pipes():
        pipe.stop()


def _restart() -> None:
    for pipe in _pipes():
        pipe.start()


def _forked() -> None:
    for pipe in _pipes():
        pipe.forked()


@functools.cache
def _register_hooks() -> None:
    # Once per process; each hook acts on whichever pipe the root logger has then.
    atexit.register(stop_logging)
    os.register_at_fork(before=stop_logging, after_in_parent=_restart, after_in_child=_forked)
