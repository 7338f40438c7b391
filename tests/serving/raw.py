"""Raw-socket HTTP/1.1 clients that misbehave on purpose: exact sizes, slow bytes, pipelining."""

from __future__ import annotations

import select
import socket
import time
from dataclasses import dataclass, field
from typing import BinaryIO

LOOPBACK = "127.0.0.1"


def connect(port: int, *, rcvbuf: int | None = None, timeout: float = 10) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        # Before connecting, so the window we offer is small from the start.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(timeout)
    sock.connect((LOOPBACK, port))
    return sock


def request_head(
    method: str, path: str, headers: list[tuple[str, str]] | None = None, *, size: int | None = None
) -> bytes:
    """A request line and headers; with `size`, an `X-Pad` header makes it exactly that long."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {LOOPBACK}"]
    lines += [f"{name}: {value}" for name, value in headers or []]
    head = "\r\n".join(lines) + "\r\n"
    if size is not None:
        pad = size - len(head) - len("X-Pad: \r\n\r\n")
        assert pad >= 0, f"{size} bytes cannot hold this head"
        head += f"X-Pad: {'p' * pad}\r\n"
    data = (head + "\r\n").encode()
    assert size is None or len(data) == size
    return data


@dataclass
class Answer:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


def read_answer(source: socket.socket | BinaryIO) -> Answer:
    """One response (Content-Length or chunked body); EOFError if the connection ends first.

    Pass one `sock.makefile("rb")` for several answers on a connection: it reads ahead.
    """
    stream = source.makefile("rb") if isinstance(source, socket.socket) else source
    status_line = stream.readline()
    if not status_line:
        raise EOFError("closed before an answer")
    answer = Answer(int(status_line.split()[1]))
    while (line := stream.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        answer.headers[name.strip().lower()] = value.strip()
    if answer.headers.get("transfer-encoding") == "chunked":
        body = bytearray()
        while (size := int(stream.readline().split(b";")[0], 16)) > 0:
            body += stream.read(size)
            stream.readline()
        stream.readline()
        answer.body = bytes(body)
    else:
        length = int(answer.headers.get("content-length", "0"))
        answer.body = stream.read(length)
        if len(answer.body) != length:
            raise EOFError("closed inside an answer")
    return answer


def answer_or_reset(sock: socket.socket) -> Answer | None:
    """The server's answer, or None if it reset the connection; a clean close without one fails."""
    try:
        return read_answer(sock)
    except ConnectionResetError:
        return None


def wait_closed(sock: socket.socket, limit: float, dribble: bytes = b"") -> float:
    """Seconds until the server closes without a word, sending `dribble` a byte at a time every 50 ms meanwhile."""
    started = time.monotonic()
    pending = memoryview(dribble)
    while time.monotonic() - started < limit:
        if pending:
            try:
                sock.send(pending[:1])
            except (BrokenPipeError, ConnectionResetError):
                return time.monotonic() - started
            pending = pending[1:]
        readable, _, _ = select.select([sock], [], [], 0.05)
        if readable:
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                return time.monotonic() - started
            if not data:
                return time.monotonic() - started
            raise AssertionError(f"answered instead of closing: {data[:80]!r}")
    raise AssertionError(f"still open after {limit} s")
