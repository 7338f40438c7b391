"""Request line plus headers over `max_header_bytes` (64 KiB) are refused with 431, memory bounded."""

from __future__ import annotations

import json
import time

import httpx

from tests.serving.conftest import Served
from tests.serving.raw import answer_or_reset, connect, read_answer, request_head

LIMIT = 64 * 1024


def _refused(served: Served, data: bytes) -> None:
    """The head is answered 431 in the service's error shape (or, at worst, the connection reset)."""
    with connect(served.port) as sock:
        sock.sendall(data)
        answer = answer_or_reset(sock)
    if answer is not None:
        assert answer.status == 431, answer
        assert answer.headers["connection"] == "close"
        body = json.loads(answer.body)
        if served.name == "registry":
            assert body["errors"][0]["code"] == "UNSUPPORTED"
            assert answer.headers["docker-distribution-api-version"] == "registry/2.0"
        else:
            assert body["error"] == "invalid_request" and body["error_description"]


def _still_serving(served: Served) -> None:
    assert httpx.get(served.url + served.probe).status_code == served.probe_status


def test_a_head_of_exactly_the_limit_is_served(quick: Served) -> None:
    for size in (LIMIT - 1, LIMIT):
        with connect(quick.port) as sock:
            sock.sendall(request_head("GET", quick.probe, [("Connection", "close")], size=size))
            assert read_answer(sock).status == quick.probe_status


def test_one_byte_more_is_431(quick: Served) -> None:
    offset = quick.log_offset()
    with connect(quick.port) as sock:
        sock.sendall(request_head("GET", quick.probe, size=LIMIT + 1))
        answer = read_answer(sock)
    assert answer.status == 431
    time.sleep(0.1)
    (refusal,) = [e for e in quick.log_entries(offset) if e["msg"] == "request refused"]
    assert refusal["status"] == 431 and refusal["level"] == "warning" and "exc" not in refusal
    _still_serving(quick)


def test_many_small_headers_add_up(quick: Served) -> None:
    headers = [(f"X-Header-{i}", "v" * 20) for i in range(3000)]  # ~100 KiB in all
    _refused(quick, request_head("GET", quick.probe, headers))
    _still_serving(quick)


def test_one_huge_header(quick: Served) -> None:
    _refused(quick, request_head("GET", quick.probe, [("X-Huge", "h" * 200_000)]))
    _still_serving(quick)


def test_a_huge_url(quick: Served) -> None:
    _refused(quick, request_head("GET", "/" + "u" * 100_000))
    _still_serving(quick)


def test_a_10_mb_header_stream_is_cut_off_with_bounded_memory(quick: Served) -> None:
    before = quick.rss_kib()
    peak = before
    with connect(quick.port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Endless: ")
        chunk = b"e" * 65536
        try:
            for _ in range(160):  # 10 MiB
                sock.sendall(chunk)
                peak = max(peak, quick.rss_kib())
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused and closed while we were still sending: as it should be
        sock.settimeout(5)
        try:
            answer = answer_or_reset(sock)
        except TimeoutError:
            raise AssertionError("no answer and no close after 10 MiB of header") from None
    assert answer is None or answer.status == 431
    peak = max(peak, quick.rss_kib())
    assert peak - before < 50 * 1024, f"RSS grew by {(peak - before) // 1024} MiB"
    _still_serving(quick)
