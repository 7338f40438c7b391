"""uvicorn's httptools protocol with what uvicorn cannot be configured to do.

uvicorn (0.55) bounds how long a connection may idle between requests and,
with h11 only, how large an unfinished event may grow; with httptools it
lets a client take as long as it likes over a request head or body, and send
as many header bytes as it likes (httptools buffers a header until its value
ends, so counting in `on_header` would come too late). Per connection, this
protocol adds:

- the request line and headers may take `max_header_bytes` bytes, counted as
  they arrive, before the parser sees them; more is answered 431, in the
  service's own error shape, and the connection lingers so the client reads
  the answer rather than a reset;
- they must be complete `header_timeout` seconds after the connection opened
  or the request's first byte came, else the connection is closed: a silent
  connection as much as a dribbling one;
- an incomplete body may go `body_timeout` seconds without a byte, unless we
  are the reason (reading paused because the app is not consuming, or a
  `100 Continue` not sent yet).

A head or body that arrives within one read arms no timer: the hot path
pays a few attribute checks per read, not a timer per request or chunk.

And two things for speed that no uvicorn setting gives: a small response's
head goes out in the same write as its body (`_HeadFirst`: one send, not
two, per small answer), and a request body is gathered without copies, with
room for 1 MiB once the app reads it (`_BodyParts`, `on_body`: 1 GiB uploads
629 -> 728 MB/s, median of six).

uvicorn's protocol is not public API: `tests/unit/test_uvicorn_private_api.py`
checks every method overridden or called, the attributes read and the
source of the two methods replaced outright, and pyproject.toml pins the
uvicorn series it passed on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import httptools
from uvicorn.config import Config
from uvicorn.protocols.http.flow_control import HIGH_WATER_LIMIT, FlowControl
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from authcore.http_limits import Limits

__all__ = ["GuardedHttpToolsProtocol", "Refusal", "guarded_protocol"]

log = logging.getLogger("authcore.http")

# A refused client gets this long to read our answer before the close. What it
# sends meanwhile is read and dropped: closing on unread data would be a reset,
# which can destroy the answer before the client reads it.
LINGER = 0.5

# (status, reason) -> (headers, body): a refusal in the service's own error shape.
Refusal = Callable[[int, str], tuple[Sequence[tuple[str, str]], bytes]]


class _StampedFlow(FlowControl):
    """Flow control that remembers when reading last resumed: the end of a stall of ours."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(transport)
        self._loop = loop
        self.resumed_at = 0.0

    def resume_reading(self) -> None:
        if self.read_paused:
            self.resumed_at = self._loop.time()
        super().resume_reading()


@dataclass(frozen=True)
class _Guard:
    limits: Limits
    refusal: Refusal


class _HeadFirst:
    """One response's transport: its first write (the head) goes out with the second.

    uvicorn writes the status line and headers, then each body part, each a
    send of its own; for a small answer that is two system calls and two
    segments where one would do. The head waits for the next write or, if
    none comes in this turn of the loop (a HEAD, a body still being read),
    goes alone at the next turn, before any later event of the connection.
    Everything after the head is written as it comes.
    """

    __slots__ = ("_fresh", "_held", "_transport")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._fresh = True
        self._held: bytes | None = None

    def write(self, data: bytes) -> None:
        if self._fresh:
            self._fresh = False
            if not self._transport.is_closing():
                self._held = data
                asyncio.get_running_loop().call_soon(self.flush)
            return
        held, self._held = self._held, None
        if held is None:
            self._transport.write(data)
        elif len(data) <= _JOIN_LIMIT:
            self._transport.write(held + data)
        else:
            self._transport.write(held)
            self._transport.write(data)

    def flush(self) -> None:
        held, self._held = self._held, None
        if held is not None and not self._transport.is_closing():
            self._transport.write(held)

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def close(self) -> None:
        self.flush()
        self._transport.close()


class _BodyParts:
    """A request body's parts not yet received by the app, kept as they came.

    Stands in for the bytearray uvicorn's cycle gathers them in: appending
    one part copies nothing, and handing them over joins them, which for the
    usual single part is no copy either. Uploads thus skip two copies of
    every byte on the event loop.
    """

    __slots__ = ("_parts", "_size")

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._size = 0

    def __iadd__(self, data: bytes) -> _BodyParts:
        self._parts.append(data)
        self._size += len(data)
        return self

    def __len__(self) -> int:
        return self._size

    def __bytes__(self) -> bytes:
        parts = self._parts
        return parts[0] if len(parts) == 1 else b"".join(parts)


# Bytes of a request body gathered for the app before reading pauses, once the
# app has taken a part of it (before, uvicorn's 64 KiB: a request whose app
# never reads its body holds no more than it did).
BODY_HIGH_WATER = 1024 * 1024
# Bodies up to this size are copied behind the head into one write.
_JOIN_LIMIT = 64 * 1024


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """Use through `guarded_protocol`, which binds the guard to a subclass."""

    guard: ClassVar[_Guard]

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._expect_head = True  # the next bytes belong to a request head
        self._head_begun = False  # ... and its first byte has come
        self._head_bytes = 0
        self._messages = 0
        self._in_body = False
        self._body_seen = 0.0
        self._refused = False
        self._header_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._flow: _StampedFlow | None = None
        # The current body has had a part gathered / has been read by the app.
        self._body_parts_begun = False
        self._body_read = False

    # Connection

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.flow = self._flow = _StampedFlow(transport, self.loop)
        self._header_timer = self.loop.call_later(
            self.guard.limits.header_timeout, self._head_overdue
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # lingering after a refusal: read and dropped
        self._unset_keepalive_if_required()
        if self._in_body:
            self._body_seen = self.loop.time()
        limit = self.guard.limits.max_header_bytes
        chunk: bytes | memoryview = data
        while self._expect_head and len(chunk) > (room := limit - self._head_bytes):
            # Feed exactly what the head may still take: if it is not complete
            # then, it is too large, wherever it would have ended.
            completed = self._messages
            view = memoryview(chunk)
            self._head_bytes = limit
            if not self._feed(view[:room]):
                return
            chunk = view[room:]
            if self._expect_head:
                if self._messages == completed:
                    self._refuse(431, f"request line and headers exceed {limit} bytes")
                    return
                # A pipelined request began inside that slice; count it from
                # here. Its bytes before, like those of one that begins after
                # a body in the same read, go uncounted: at most one read more.
                self._head_bytes = 0
        if self._expect_head:
            self._head_bytes += len(chunk)
        if self._feed(chunk):
            self._arm_timers()

    def _feed(self, data: bytes | memoryview) -> bool:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # `serve` turns WebSocket off: the request was answered as plain
            # HTTP and the parser goes on with the next one.
            log.info("upgrade ignored", extra={"client": self._peer()})
        except httptools.HttpParserError as exc:
            self._refuse(400, f"invalid HTTP request: {exc}")
            return False
        return True

    # Parser callbacks

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_begun = True

    def on_body(self, body: bytes) -> None:
        # uvicorn's own, but gathering without copies and with more room once
        # the app reads: pausing at 64 KiB cost uploads two epoll_ctl per read
        # and a stall while the app's task came round (measured: 1 GiB uploads
        # 629 -> 728 MB/s, median of six).
        cycle = self.cycle
        if (self.parser.should_upgrade() and self._should_upgrade()) or cycle.response_complete:
            return
        if not isinstance(cycle.body, _BodyParts):
            # Either the body's first part, or the app took what was gathered.
            if self._body_parts_begun:
                self._body_read = True
            self._body_parts_begun = True
            parts = _BodyParts()
            if cycle.body:
                parts += bytes(cycle.body)
            cycle.body = parts  # type: ignore[assignment]
        cycle.body += body
        if len(cycle.body) > (BODY_HIGH_WATER if self._body_read else HIGH_WATER_LIMIT):
            self.flow.pause_reading()
        cycle.message_event.set()

    def on_headers_complete(self) -> None:
        self._expect_head = self._head_begun = False
        self._head_bytes = 0
        self._in_body = True
        self._body_parts_begun = self._body_read = False
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        super().on_headers_complete()
        if self.cycle is not None:
            self.cycle.transport = _HeadFirst(self.transport)  # type: ignore[assignment]

    def _flush_head(self) -> None:
        """Send a held head before the connection itself writes or closes."""
        transport = getattr(self.cycle, "transport", None)
        if isinstance(transport, _HeadFirst):
            transport.flush()

    def shutdown(self) -> None:
        self._flush_head()
        super().shutdown()

    def on_message_complete(self) -> None:
        self._in_body = False
        self._expect_head = True
        self._messages += 1
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        super().on_message_complete()

    # Deadlines

    def _arm_timers(self) -> None:
        if self._expect_head:
            # Bytes between requests that begin none (blank lines) cancelled
            # uvicorn's keep-alive timer; they must not hold the connection open.
            idle = self.cycle is None or self.cycle.response_complete
            if self._header_timer is None and (self._head_begun or idle):
                self._header_timer = self.loop.call_later(
                    self.guard.limits.header_timeout, self._head_overdue
                )
        elif self._in_body and self._body_timer is None:
            self._body_seen = self.loop.time()
            self._body_timer = self.loop.call_later(
                self.guard.limits.body_timeout, self._body_check
            )

    def _head_overdue(self) -> None:
        self._header_timer = None
        self._close("header_timeout", self.guard.limits.header_timeout)

    def _body_check(self) -> None:
        self._body_timer = None
        if not self._in_body or self._refused or self.transport.is_closing():
            return
        assert self._flow is not None
        now = self.loop.time()
        timeout = self.guard.limits.body_timeout
        held = self._flow.read_paused or (
            self.cycle is not None and self.cycle.waiting_for_100_continue
        )
        if held:
            # We hold the client back; its clock starts again when we read.
            self._body_seen = now
            wait = timeout
        else:
            wait = max(self._body_seen, self._flow.resumed_at) + timeout - now
            if wait <= 0:
                self._close("body_timeout", timeout)
                return
        self._body_timer = self.loop.call_later(wait, self._body_check)

    def _cancel_timers(self) -> None:
        for timer in (self._header_timer, self._body_timer):
            if timer is not None:
                timer.cancel()
        self._header_timer = self._body_timer = None

    # Ending a connection

    def _peer(self) -> str:
        return self.client[0] if self.client else ""

    def _close(self, reason: str, timeout: float) -> None:
        if self.transport.is_closing():
            return
        log.info(
            "connection closed",
            extra={"reason": reason, "timeout": timeout, "client": self._peer()},
        )
        self.transport.close()

    def _refuse(self, status: int, reason: str) -> None:
        """Answer `status` and close, unless an answer to an earlier request is under way."""
        log.warning(
            "request refused", extra={"status": status, "reason": reason, "client": self._peer()}
        )
        self._refused = True
        self._cancel_timers()
        if self.cycle is not None and not self.cycle.response_complete:
            self.transport.close()
            return
        self._flush_head()
        headers, body = self.guard.refusal(status, reason)
        head = [STATUS_LINE[status]]
        head += [
            name + b": " + value + b"\r\n" for name, value in self.server_state.default_headers
        ]
        head += [f"{name}: {value}\r\n".encode("latin-1") for name, value in headers]
        head.append(b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body))
        self.transport.write(b"".join(head) + body)
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER, self.transport.close)


def guarded_protocol(limits: Limits, refusal: Refusal) -> type[GuardedHttpToolsProtocol]:
    """A protocol class for uvicorn's `http=` bound to these limits (no state shared)."""
    return type(
        "GuardedHttpToolsProtocol", (GuardedHttpToolsProtocol,), {"guard": _Guard(limits, refusal)}
    )
