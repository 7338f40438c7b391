"""Heads must be complete within `header_timeout`; a body may not stall past `body_timeout`.

`quick` sets both to one second; every wait below is bounded by that plus a margin.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.serving.conftest import Served
from tests.serving.raw import connect, read_answer, request_head, wait_closed

TIMEOUT = 1.0
MARGIN = 1.5
ALL = "repository:team/app:pull,push"


def _closures(served: Served, offset: int, reason: str) -> list[dict[str, Any]]:
    time.sleep(0.1)
    return [
        e
        for e in served.log_entries(offset)
        if e["msg"] == "connection closed" and e["reason"] == reason
    ]


def _no_tracebacks(served: Served, offset: int) -> None:
    entries = served.log_entries(offset)
    assert not [e for e in entries if "exc" in e or e["level"] in ("error", "critical")], entries
    assert "Traceback" not in served.log_text()[offset:]


def test_a_silent_connection_is_closed(quick: Served) -> None:
    offset = quick.log_offset()
    with connect(quick.port) as sock:
        elapsed = wait_closed(sock, TIMEOUT + MARGIN)
    assert TIMEOUT * 0.9 <= elapsed <= TIMEOUT + MARGIN
    (closure,) = _closures(quick, offset, "header_timeout")
    assert closure["level"] == "info" and closure["client"] == "127.0.0.1"
    _no_tracebacks(quick, offset)


def test_a_dribbled_head_is_closed_at_the_deadline(quick: Served) -> None:
    head = request_head("GET", quick.probe, [("X-Slow", "s" * 200)])
    with connect(quick.port) as sock:
        # One byte every 50 ms: always busy, never done.
        elapsed = wait_closed(sock, TIMEOUT + MARGIN, dribble=head)
    assert TIMEOUT * 0.9 <= elapsed <= TIMEOUT + MARGIN


def test_the_next_request_on_a_kept_connection_has_its_own_deadline(quick: Served) -> None:
    with connect(quick.port) as sock:
        sock.sendall(request_head("GET", quick.probe))
        assert read_answer(sock).status == quick.probe_status
        started = time.monotonic()
        elapsed = wait_closed(sock, TIMEOUT + MARGIN, dribble=request_head("GET", quick.probe))
    assert elapsed <= TIMEOUT + MARGIN and time.monotonic() - started >= TIMEOUT * 0.9


def test_blank_lines_between_requests_do_not_hold_a_connection(quick: Served) -> None:
    with connect(quick.port) as sock:
        sock.sendall(request_head("GET", quick.probe))
        assert read_answer(sock).status == quick.probe_status
        # Empty lines begin no request; they still must not keep the connection forever.
        elapsed = wait_closed(sock, TIMEOUT + MARGIN, dribble=b"\r\n" * 40)
    assert elapsed <= TIMEOUT + MARGIN


def test_held_heads_are_all_closed_and_memory_stays_bounded(quick: Served) -> None:
    before = quick.rss_kib()
    socks = [connect(quick.port) for _ in range(100)]
    try:
        partial = request_head("GET", quick.probe, size=60_000)[:-2]  # never the blank line
        for sock in socks:
            sock.sendall(partial)
        during = quick.rss_kib()
        deadline = time.monotonic() + TIMEOUT + MARGIN + 1
        for sock in socks:
            wait_closed(sock, max(deadline - time.monotonic(), 0.1))
    finally:
        for sock in socks:
            sock.close()
    assert max(during, quick.rss_kib()) - before < 50 * 1024


def _stalled_body_request(
    served: Served, bearer: Callable[..., dict[str, str]]
) -> tuple[str, bytes]:
    if served.name == "tokenserver":
        headers = [("Content-Type", "application/x-www-form-urlencoded"), ("Content-Length", "500")]
        return "POST", request_head("POST", "/token", headers) + b"grant_type="
    auth = bearer(ALL)
    started = httpx.post(f"{served.url}/v2/team/app/blobs/uploads/", headers=auth)
    assert started.status_code == 202, started.text
    headers = [*auth.items(), ("Content-Length", "100000")]
    return "PATCH", request_head("PATCH", started.headers["location"], headers) + b"x" * 1000


def test_a_stalled_body_is_closed_and_logged_as_a_disconnect(
    quick: Served, bearer: Callable[..., dict[str, str]]
) -> None:
    method, data = _stalled_body_request(quick, bearer)
    offset = quick.log_offset()
    with connect(quick.port) as sock:
        sock.sendall(data)
        elapsed = wait_closed(sock, TIMEOUT + MARGIN)
    assert TIMEOUT * 0.9 <= elapsed <= TIMEOUT + MARGIN
    (closure,) = _closures(quick, offset, "body_timeout")
    assert closure["level"] == "info"
    entries = quick.log_entries(offset)
    assert [e for e in entries if e["msg"] == "client disconnected"]
    (access,) = [e for e in entries if e["logger"] == quick.access_logger and e["method"] == method]
    assert access["status"] == 499
    _no_tracebacks(quick, offset)
    if quick.name == "registry":
        # What arrived before the stall stays in the session, for the client to resume.
        status = httpx.get(quick.url + access["path"], headers=bearer(ALL))
        assert status.status_code == 204 and status.headers["range"] == "0-999"


def test_a_slow_but_steady_body_is_not_cut(
    registry: Served, bearer: Callable[..., dict[str, str]]
) -> None:
    auth = bearer(ALL)
    location = httpx.post(f"{registry.url}/v2/team/app/blobs/uploads/", headers=auth).headers[
        "location"
    ]
    pieces = [bytes([65 + i]) * 1000 for i in range(6)]
    body = b"".join(pieces)
    with connect(registry.port) as sock:
        headers = [*auth.items(), ("Content-Length", str(len(body)))]
        sock.sendall(request_head("PATCH", location, headers))
        for piece in pieces:  # 3 s in all, never more than 0.5 s without a byte
            time.sleep(0.5)
            sock.sendall(piece)
        answer = read_answer(sock)
    assert answer.status == 202, answer
    assert answer.headers["range"] == f"0-{len(body) - 1}"


@pytest.mark.timeout(120)
def test_a_body_we_are_not_reading_is_not_a_stall(
    registry: Served, bearer: Callable[..., dict[str, str]]
) -> None:
    """A pipelined PATCH waits, reading paused, behind a download the client is slow to read."""
    auth = bearer(ALL)
    blob = b"b" * (16 * 1024 * 1024)
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    location = httpx.post(f"{registry.url}/v2/team/app/blobs/uploads/", headers=auth).headers[
        "location"
    ]
    pushed = httpx.put(f"{registry.url}{location}?digest={digest}", content=blob, headers=auth)
    assert pushed.status_code == 201, pushed.text
    upload = httpx.post(f"{registry.url}/v2/team/app/blobs/uploads/", headers=auth).headers[
        "location"
    ]
    body = b"p" * (512 * 1024)
    offset = registry.log_offset()
    with connect(registry.port, rcvbuf=16 * 1024, timeout=30) as sock:
        download = request_head("GET", f"/v2/team/app/blobs/{digest}", list(auth.items()))
        patch = request_head("PATCH", upload, [*auth.items(), ("Content-Length", str(len(body)))])
        sock.sendall(download + patch)
        sender = threading.Thread(target=sock.sendall, args=(body,), daemon=True)
        sender.start()
        time.sleep(3 * TIMEOUT)  # the server holds the PATCH body back all this time
        answers = sock.makefile("rb")
        first = read_answer(answers)
        second = read_answer(answers)
        sender.join(10)
    assert first.status == 200 and first.body == blob
    assert second.status == 202, second
    assert second.headers["range"] == f"0-{len(body) - 1}"
    assert not _closures(registry, offset, "body_timeout")
