"""The JSON log writer: every line written once and in order, with its request's context,
in batches rather than a write per line, and all of it by the time logging stops."""

from __future__ import annotations

import io
import json
import logging
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from authcore import jsonlog
from authcore.context import ACCOUNT, REQUEST_ID, request_scope
from authcore.jsonlog import configure_logging, stop_logging

KEYS = (REQUEST_ID, ACCOUNT)


class CountingStream(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


@pytest.fixture
def stream(monkeypatch: pytest.MonkeyPatch) -> Iterator[CountingStream]:
    root = logging.getLogger()
    saved: dict[str, Any] = {
        "handlers": root.handlers[:],
        "level": root.level,
        "flags": {
            name: getattr(logging, name)
            for name in ("logThreads", "logProcesses", "logMultiprocessing", "_srcfile")
        },
        "uvicorn": {
            name: (logging.getLogger(name).handlers[:], logging.getLogger(name).propagate)
            for name in ("uvicorn", "uvicorn.error")
        },
        "access": logging.getLogger("uvicorn.access").disabled,
        "httpx": logging.getLogger("httpx").level,
    }
    captured = CountingStream()
    monkeypatch.setattr(sys, "stderr", captured)
    configure_logging("info", KEYS)
    try:
        yield captured
    finally:
        stop_logging()
        root.handlers[:] = saved["handlers"]
        root.setLevel(saved["level"])
        for name, flag in saved["flags"].items():
            setattr(logging, name, flag)
        for name, (handlers, propagate) in saved["uvicorn"].items():
            logging.getLogger(name).handlers[:] = handlers
            logging.getLogger(name).propagate = propagate
        logging.getLogger("uvicorn.access").disabled = saved["access"]
        logging.getLogger("httpx").setLevel(saved["httpx"])


def test_the_urls_httpx_fetches_are_not_logged(stream: CountingStream) -> None:
    # An upstream registry redirects blobs to signed URLs: their query is a credential.
    signed = "https://127.0.0.1:9000/b/blob?X-Amz-Signature=sig-value-7&X-Amz-Credential=AKIA7"
    logging.getLogger("httpx").info("HTTP Request: GET %s", signed)
    logging.getLogger("httpx").warning("a warning still shows")
    stop_logging()
    lines = stream.getvalue()
    assert "sig-value-7" not in lines and "a warning still shows" in lines


def entries(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_line_is_written_without_a_stop_with_its_requests_context(
    stream: CountingStream,
) -> None:
    log = logging.getLogger("test.jsonlog")
    with request_scope("req-1"):
        ACCOUNT.set("alice")
        log.info("request", extra={"status": 200})
    log.info("outside")
    deadline = time.monotonic() + 10
    while len(entries(stream)) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    first, second = entries(stream)
    assert first["msg"] == "request" and first["status"] == 200
    assert first["request_id"] == "req-1" and first["account"] == "alice"
    assert first["logger"] == "test.jsonlog" and first["level"] == "info"
    assert second["msg"] == "outside" and "request_id" not in second


def test_a_burst_is_written_whole_in_order_and_in_batches(stream: CountingStream) -> None:
    log = logging.getLogger("test.jsonlog")
    lines = 3 * jsonlog._BATCH + 7
    started = time.monotonic()
    for number in range(lines):
        log.info("line %d", number)
    stop_logging()
    elapsed = time.monotonic() - started
    assert [e["msg"] for e in entries(stream)] == [f"line {n}" for n in range(lines)]
    # Each wake-up sleeps INTERVAL first, then writes what gathered (BATCH lines a call).
    wakeups = elapsed / jsonlog.INTERVAL + 1
    assert stream.writes <= wakeups + lines / jsonlog._BATCH + 1


def test_lines_logged_after_a_stop_are_still_written(stream: CountingStream) -> None:
    stop_logging()
    logging.getLogger("test.jsonlog").warning("late")
    stop_logging()
    assert [e["msg"] for e in entries(stream)] == ["late"]
