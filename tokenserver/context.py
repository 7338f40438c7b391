"""Typed request-context keys, bound to every log line of the request.

Each key is a `ContextVar` wrapped with the name it carries in a log record and
how its value is rendered; code sets values through the key object, never by
a string name, so a typo is an AttributeError, not a silently missing field.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from tokenserver.scope import Access

__all__ = [
    "ACCOUNT",
    "CLIENT_IP",
    "GRANTED",
    "KEYS",
    "REQUESTED",
    "REQUEST_ID",
    "ContextFilter",
    "ContextKey",
    "JSONFormatter",
    "configure_logging",
    "make_key",
    "request_scope",
]

T = TypeVar("T")


# One dict per request, shared by every copy of the context: a worker thread
# (run_in_threadpool copies the context) that sets a key sets it for the
# request, so the access line written afterwards on the event loop sees it.
_REQUEST: ContextVar[dict[str, Any] | None] = ContextVar("request_context", default=None)


@dataclass(frozen=True)
class ContextKey(Generic[T]):
    log_field: str
    render: Callable[[T], Any]

    def set(self, value: T) -> None:
        values = _REQUEST.get()
        if values is None:  # outside any request: a context of its own
            values = {}
            _REQUEST.set(values)
        values[self.log_field] = value

    def get(self) -> T | None:
        values = _REQUEST.get()
        return None if values is None else values.get(self.log_field)


def make_key(log_field: str, render: Callable[[T], Any]) -> ContextKey[T]:
    return ContextKey(log_field, render)


def _accesses(value: Iterable[Access]) -> list[str]:
    return [str(a) for a in value]


REQUEST_ID: ContextKey[str] = make_key("request_id", str)
CLIENT_IP: ContextKey[str] = make_key("client_ip", str)
ACCOUNT: ContextKey[str] = make_key("account", str)
REQUESTED: ContextKey[tuple[Access, ...]] = make_key("requested", _accesses)
GRANTED: ContextKey[tuple[Access, ...]] = make_key("granted", _accesses)

KEYS: tuple[ContextKey[Any], ...] = (REQUEST_ID, CLIENT_IP, ACCOUNT, REQUESTED, GRANTED)


@contextmanager
def request_scope(request_id: str) -> Iterator[None]:
    """Start a request with every key cleared, and restore the outer values after."""
    token = _REQUEST.set({})
    REQUEST_ID.set(request_id)
    try:
        yield
    finally:
        _REQUEST.reset(token)


class ContextFilter(logging.Filter):
    """Copies the current request's context onto each record as `record.context`."""

    def __init__(self, keys: tuple[ContextKey[Any], ...] = KEYS) -> None:
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
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry |= getattr(record, "context", {})
        entry |= {k: v for k, v in vars(record).items() if k not in _STANDARD}
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: str = "info", keys: tuple[ContextKey[Any], ...] = KEYS) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JSONFormatter())
    handler.addFilter(ContextFilter(keys))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").disabled = True
