"""The one ASGI middleware both services run: request context, timing, status and bytes.

Pure ASGI, so the context stays in the request's task and bodies stream
through untouched (only their lengths are counted). Each request gets a fresh
context with its id (a per-process random prefix and a counter), and when it ends one access line (the path only: query
strings and bodies may carry credentials) and one `Finished` record for each
observer, such as a service's metrics.
"""

from __future__ import annotations

import itertools
import logging
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from authcore.context import request_scope
from authcore.metric_labels import route_label

__all__ = ["Finished", "Observer", "RequestMiddleware"]


@dataclass(frozen=True, slots=True)
class Finished:
    """One HTTP request, once it ended (or failed): what metrics are made of."""

    method: str
    route: str
    status: int
    seconds: float
    bytes_in: int
    bytes_out: int


Observer = Callable[[Finished], None]


class RequestMiddleware:
    def __init__(self, app: ASGIApp, *, logger: str, observers: Sequence[Observer] = ()) -> None:
        self.app = app
        self.log = logging.getLogger(logger)
        self.observers = tuple(observers)
        # Request ids: a random prefix and a counter, unique without a syscall
        # or a random draw per request. The prefix is drawn at the first
        # request, so each worker process (forked before any) has its own.
        self._prefix = ""
        self._numbers = itertools.count()
        self._labels: dict[str, str] = {}

    def _route(self, scope: Scope) -> str:
        # Worked out once per route template the app has, not per request.
        path = getattr(scope.get("route"), "path", None)
        label = self._labels.get(path) if isinstance(path, str) else None
        if label is None:
            label = route_label(scope)
            if isinstance(path, str):
                self._labels[path] = label
        return label

    def _request_id(self) -> str:
        if not self._prefix:
            self._prefix = secrets.token_hex(4)
        return f"{self._prefix}{next(self._numbers):08x}"

    def _access_line(self, scope: Scope, status: int, seconds: float) -> None:
        self.log.info(
            "request",
            extra={
                "method": scope["method"],
                "path": scope["path"],
                "status": status,
                "duration_ms": round(seconds * 1000, 2),
                "client": (scope.get("client") or ("", 0))[0],
            },
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # A request that ends before it answered is one we failed, until it says otherwise.
        status = 500
        bytes_in = bytes_out = 0
        started = time.perf_counter()

        async def receive_counting() -> Message:
            nonlocal bytes_in
            message = await receive()
            if message["type"] == "http.request":
                bytes_in += len(message.get("body", b""))
            return message

        async def send_counting(message: Message) -> None:
            nonlocal status, bytes_out
            kind = message["type"]
            if kind == "http.response.body":
                bytes_out += len(message.get("body", b""))
            elif kind == "http.response.start":
                status = message["status"]
            await send(message)

        with request_scope(self._request_id()):
            try:
                await self.app(scope, receive_counting, send_counting)
            finally:
                seconds = time.perf_counter() - started
                if self.log.isEnabledFor(logging.INFO):
                    self._access_line(scope, status, seconds)
                if self.observers:
                    finished = Finished(
                        scope["method"], self._route(scope), status, seconds, bytes_in, bytes_out
                    )
                    for observe in self.observers:
                        observe(finished)
