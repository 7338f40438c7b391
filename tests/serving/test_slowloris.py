"""200 clients dribbling their heads a byte at a time do not slow a normal request down."""

from __future__ import annotations

import socket
import threading
import time

import httpx

from tests.serving.conftest import Served
from tests.serving.raw import connect

SLOW_CLIENTS = 200


def test_slow_clients_do_not_starve_a_normal_request(standard: Served) -> None:
    socks: list[socket.socket] = []
    stop = threading.Event()
    sent = [0]

    def dribble() -> None:
        head = f"GET {standard.probe} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode()
        head += b"X-Slow: " + b"s" * 10_000
        position = 0
        while not stop.is_set() and position < len(head):
            for sock in socks:
                try:
                    sock.send(head[position : position + 1])
                    sent[0] += 1
                except OSError:
                    pass
            position += 1
            stop.wait(0.05)

    try:
        socks.extend(connect(standard.port) for _ in range(SLOW_CLIENTS))
        worker = threading.Thread(target=dribble, daemon=True)
        worker.start()
        time.sleep(0.5)
        timings = []
        with httpx.Client(timeout=5) as client:
            for _ in range(5):
                started = time.monotonic()
                response = client.get(standard.url + standard.probe)
                timings.append(time.monotonic() - started)
                assert response.status_code == standard.probe_status
                time.sleep(0.1)
        # A fresh connection each time, too, as a new client would come.
        for _ in range(3):
            started = time.monotonic()
            assert httpx.get(standard.url + standard.probe).status_code == standard.probe_status
            timings.append(time.monotonic() - started)
    finally:
        stop.set()
        for sock in socks:
            sock.close()
    assert max(timings) < 1.0, timings
    # The slow clients really were being served bytes all along.
    assert sent[0] >= SLOW_CLIENTS * 10
