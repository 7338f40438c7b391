"""Answers whole and in order, however they are written: HEAD, pipelined, HTTP/1.0.

A response's head waits to go out with its first body bytes; these tests
hold that to what a client must see: a head with no body still comes at
once, pipelined answers keep their order, a closing answer is whole.
"""

from __future__ import annotations

import socket
import time

import pytest

from tests.serving.conftest import Served
from tests.serving.raw import LOOPBACK, connect, read_answer, request_head


def _head_only(sock: socket.socket) -> dict[str, str]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise EOFError("closed before the head ended")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    assert rest == b"", "a HEAD answer carries no body"
    lines = head.decode("latin-1").split("\r\n")
    return {"status": lines[0].split()[1]} | {
        k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])
    }


def test_a_head_answer_comes_at_once_without_a_body(standard: Served) -> None:
    with connect(standard.port, timeout=5) as sock:
        started = time.monotonic()
        sock.sendall(request_head("HEAD", standard.probe))
        head = _head_only(sock)
        assert time.monotonic() - started < 2
        # The token server's probe takes GET only: a 405, whose body HEAD leaves out.
        assert head["status"] == ("405" if standard.name == "tokenserver" else "401")
        assert "content-length" in head
        sock.settimeout(0.3)
        with pytest.raises(TimeoutError):
            sock.recv(1)  # nothing follows, and the connection stays open
        sock.settimeout(5)
        sock.sendall(request_head("GET", standard.probe))
        assert read_answer(sock).status == standard.probe_status


def test_pipelined_answers_come_whole_and_in_order(standard: Served) -> None:
    paths = [standard.probe, "/no-such-path", standard.probe, "/no-such-path"]
    with connect(standard.port) as sock:
        sock.sendall(b"".join(request_head("GET", p) for p in paths))
        stream = sock.makefile("rb")
        statuses = [read_answer(stream).status for _ in paths]
    assert statuses == [standard.probe_status, 404, standard.probe_status, 404]


def test_an_http_1_0_answer_is_whole_before_the_close(standard: Served) -> None:
    with socket.create_connection((LOOPBACK, standard.port), timeout=5) as sock:
        sock.sendall(f"GET {standard.probe} HTTP/1.0\r\nHost: {LOOPBACK}\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.split()[1] == str(standard.probe_status).encode()
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.lower().split(b"\r\n")
        if line.startswith(b"content-length:")
    )
    assert len(body) == length
