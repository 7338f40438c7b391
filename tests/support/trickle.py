"""A JWKS endpoint that answers a byte at a time: the slow or hostile `jwks_uri`.

A socket server on 127.0.0.1 (HTTPS with a certificate of its own, or plain
HTTP) that reads a request and then writes its answer, status line first,
one byte every `interval` seconds, for at most `limit` seconds, and never
finishes it in that time: each read a client makes gets a byte well within
any per-read timeout, so only a deadline for the whole fetch ends it. The
first `prompt` connections are answered at once instead (a registry's fetch
at start). It counts the connections it has had and those it is trickling on.
"""

from __future__ import annotations

import json
import select
import socket
import ssl
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from tests.support.certs import write_self_signed
from tests.support.peers import LOOPBACK

__all__ = ["TricklingServer"]

MAX_HEAD_BYTES = 64 * 1024


def _answer(document: dict[str, Any], pad: int) -> bytes:
    # Padding inside the JSON keeps the document valid however much of it is sent.
    body = json.dumps(document).encode()
    body = body[:-1] + b" " * pad + body[-1:]
    head = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
    )
    return head + body


class TricklingServer:
    """Start with `with TricklingServer(dir) as jwks:`; `jwks.url` is its JWKS URL."""

    def __init__(
        self,
        directory: Path | None = None,
        *,
        interval: float = 1.0,
        limit: float = 40.0,
        document: dict[str, Any] | None = None,
        prompt: int = 0,
    ) -> None:
        """With `directory` it speaks HTTPS, its certificate there as `ca_file`; else HTTP."""
        self.interval = interval
        self.limit = limit
        self.document = document if document is not None else {"keys": []}
        self.prompt = prompt
        self.ca_file: Path | None = None
        self._tls: ssl.SSLContext | None = None
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)
            self.ca_file, key_file = write_self_signed(directory)
            self._tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self._tls.load_cert_chain(self.ca_file, key_file)
        self.connections = 0
        self.trickling = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._listener = socket.create_server((LOOPBACK, 0))
        self._listener.settimeout(0.2)
        self.port = self._listener.getsockname()[1]
        scheme = "https" if self._tls is not None else "http"
        self.url = f"{scheme}://{LOOPBACK}:{self.port}/jwks"
        self._threads: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._accept, name="trickle", daemon=True)

    def __enter__(self) -> Self:
        self._acceptor.start()
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._acceptor.join(5)
        for thread in self._threads:
            thread.join(5)
        self._listener.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.connections += 1
                prompt = self.connections <= self.prompt
            thread = threading.Thread(
                target=self._serve, args=(conn, prompt), name="trickle-conn", daemon=True
            )
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket, prompt: bool) -> None:
        conn.settimeout(5)
        try:
            if self._tls is not None:
                conn = self._tls.wrap_socket(conn, server_side=True)
            head = b""
            while b"\r\n\r\n" not in head and len(head) < MAX_HEAD_BYTES:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                head += chunk
            # Long enough that no trickle ends it within `limit`.
            answer = _answer(self.document, 0 if prompt else int(self.limit / self.interval) + 10)
            if prompt:
                conn.sendall(answer)
                return
            self._trickle(conn, answer)
        except OSError:
            pass  # the client gave up: what a deadline is for
        finally:
            conn.close()

    def _trickle(self, conn: socket.socket, answer: bytes) -> None:
        with self._lock:
            self.trickling += 1
        try:
            ends = time.monotonic() + self.limit
            for i in range(len(answer)):
                if time.monotonic() >= ends:
                    return
                conn.sendall(answer[i : i + 1])
                if self._client_gone(conn, self.interval):
                    return
        finally:
            with self._lock:
                self.trickling -= 1

    def _client_gone(self, conn: socket.socket, seconds: float) -> bool:
        """Waits `seconds`; True as soon as the client closes (or we stop).

        An HTTP client sends nothing more after its request, so anything to
        read is its close, seen now rather than at a later write.
        """
        ends = time.monotonic() + seconds
        while (left := ends - time.monotonic()) > 0:
            readable, _, _ = select.select([conn], [], [], min(left, 0.1))
            if readable or self._stop.is_set():
                return True
        return self._stop.is_set()
