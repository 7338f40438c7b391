"""An upstream registry that answers whatever the test says: the hostile or broken one.

A threaded HTTP/1.1 server on a loopback address (127.0.0.2 is another host
as far as origins go) that records each request it gets (method, path and
query, headers) and answers it with the `Answer` its `answer` function
gives. A body of bytes goes with its Content-Length; an iterable body goes
chunked (or as it comes, when the answer names a Content-Length), each piece
as the iterable yields it, so a test can trickle, stall or never end; the
bytes it sent are counted.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Self

from tests.support.certs import write_self_signed
from tests.support.peers import LOOPBACK

__all__ = ["Answer", "FakeUpstream", "Seen"]


@dataclass(frozen=True)
class Seen:
    method: str
    path: str  # with its query
    headers: dict[str, str]  # names lower-cased


@dataclass(frozen=True)
class Answer:
    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes | Iterable[bytes] = b""


def not_found(seen: Seen) -> Answer:
    return Answer(404, {"Content-Type": "application/json"}, b'{"errors":[]}')


class FakeUpstream:
    """`with FakeUpstream() as upstream:`; set `upstream.answer`, read `upstream.seen`."""

    def __init__(self, host: str = LOOPBACK, *, tls: Path | None = None) -> None:
        """With `tls` (a directory) it speaks HTTPS, its certificate there as `ca_file`."""
        self.answer: Callable[[Seen], Answer] = not_found
        self.seen: list[Seen] = []
        self.sent_bytes = 0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((host, 0), self._handler())
        self._server.daemon_threads = True
        self.ca_file: Path | None = None
        if tls is not None:
            tls.mkdir(parents=True, exist_ok=True)
            self.ca_file, key_file = write_self_signed(tls, ip=host)
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(self.ca_file, key_file)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self.port = self._server.server_address[1]
        self.origin = f"{'https' if tls else 'http'}://{host}:{self.port}"
        # A short poll, so stopping takes a twentieth of a second rather than half of one.
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )

    def paths(self) -> list[str]:
        with self._lock:
            return [seen.path for seen in self.seen]

    def _record(self, seen: Seen) -> None:
        with self._lock:
            self.seen.append(seen)

    def _count(self, sent: int) -> None:
        with self._lock:
            self.sent_bytes += sent

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                self._answer()

            def do_HEAD(self) -> None:
                self._answer()

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _answer(self) -> None:
                seen = Seen(
                    self.command, self.path, {k.lower(): v for k, v in self.headers.items()}
                )
                fake._record(seen)
                answer = fake.answer(seen)
                self.send_response(answer.status)
                names = {name.lower() for name in answer.headers}
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                streamed = not isinstance(answer.body, bytes)
                chunked = streamed and "content-length" not in names
                if not streamed and "content-length" not in names:
                    self.send_header("Content-Length", str(len(answer.body)))  # type: ignore[arg-type]
                if chunked:
                    self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                if self.command == "HEAD":
                    return
                # A streamed body may fall short of the length it named: nothing may follow it.
                self.close_connection = self.close_connection or (streamed and not chunked)
                try:
                    self._body(answer.body, chunked)
                except OSError:
                    self.close_connection = True  # the client went: what a bound is for

            def _body(self, body: bytes | Iterable[bytes], chunked: bool) -> None:
                pieces = [body] if isinstance(body, bytes) else body
                for piece in pieces:
                    data = b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece
                    if chunked and not piece:
                        continue
                    self.wfile.write(data)
                    self.wfile.flush()
                    fake._count(len(piece))
                if chunked:
                    self.wfile.write(b"0\r\n\r\n")

        return Handler

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
