"""Typed request-context keys, bound to every log line of the request.

Each key carries the name it has in a log record and how its value is
rendered; code sets values through the key object, never by a string name,
so a typo is an AttributeError, not a silently missing field. Each service
adds keys of its own to the few both share here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

__all__ = [
    "ACCOUNT",
    "CLIENT_IP",
    "REQUEST_ID",
    "ContextKey",
    "current_values",
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


def current_values() -> dict[str, Any]:
    """The current request's values by log field (read only: set them through the keys)."""
    return _REQUEST.get() or {}


def make_key(log_field: str, render: Callable[[T], Any]) -> ContextKey[T]:
    return ContextKey(log_field, render)


REQUEST_ID: ContextKey[str] = make_key("request_id", str)
CLIENT_IP: ContextKey[str] = make_key("client_ip", str)
ACCOUNT: ContextKey[str] = make_key("account", str)


@contextmanager
def request_scope(request_id: str) -> Iterator[None]:
    """Start a request with every key cleared, and restore the outer values after."""
    token = _REQUEST.set({})
    REQUEST_ID.set(request_id)
    try:
        yield
    finally:
        _REQUEST.reset(token)
