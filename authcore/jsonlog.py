"""JSON log lines on stderr, each carrying the current request's context keys.

Lines are formatted and written by a listener thread (`QueueHandler` →
`QueueListener`), so a request on the event loop pays only for making the
record and appending it to a queue. The context keys are read when the
record is made, in the request's own context, and travel on the record
(`record.context`): the listener runs in no request's context. The listener
writes what is queued before the process exits (`stop_logging`, also at
interpreter exit), and a fork (a worker process) gets a listener of its own.
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
from collections.abc import Sequence
from typing import Any

from authcore.context import ContextKey

__all__ = ["ContextFilter", "JSONFormatter", "configure_logging", "stop_logging"]


class ContextFilter(logging.Filter):
    """Copies the current request's context onto each record as `record.context`."""

    def __init__(self, keys: Sequence[ContextKey[Any]]) -> None:
        super().__init__()
        self.keys = keys

    def filter(self, record: logging.LogRecord) -> bool:
        record.context = {
            key.log_field: key.render(value)
            for key in self.keys
            if (value := key.get()) is not None
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
    """Queues the record itself for the pipe's listener, which formats and writes it."""

    def __init__(self, pipe: _Pipe) -> None:
        super().__init__(pipe.queue)
        self.pipe = pipe

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        # The message's arguments are rendered now, while they still say what they said.
        record.msg = record.getMessage()
        record.args = None
        return record


class _Pipe:
    """The queue, its handler on the root logger, and the listener thread that writes."""

    def __init__(self, keys: Sequence[ContextKey[Any]]) -> None:
        self.output = logging.StreamHandler()
        self.output.setFormatter(JSONFormatter())
        self.queue: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
        self.handler = _Enqueue(self)
        self.handler.addFilter(ContextFilter(keys))
        self.listener: logging.handlers.QueueListener | None = None

    def start(self) -> None:
        if self.listener is None:
            self.listener = logging.handlers.QueueListener(self.queue, self.output)
            self.listener.start()

    def stop(self) -> None:
        """Write everything queued so far and stop the thread (idempotent)."""
        if self.listener is not None:
            self.listener.stop()
            self.listener = None
        self.output.flush()

    def forked(self) -> None:
        # The child has the parent's queue but no thread: what was queued
        # before the fork the parent wrote (`stop` runs before a fork).
        self.queue = queue.SimpleQueue()
        self.handler.queue = self.queue
        self.listener = None
        self.start()


def _pipes() -> list[_Pipe]:
    return [h.pipe for h in logging.getLogger().handlers if isinstance(h, _Enqueue)]


def configure_logging(level: str, keys: Sequence[ContextKey[Any]]) -> None:
    """JSON lines on stderr for this process (a server's: call once, at start)."""
    stop_logging()
    pipe = _Pipe(keys)
    root = logging.getLogger()
    root.handlers[:] = [pipe.handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").disabled = True
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
