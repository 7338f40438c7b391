"""The credential helper's device login against a hostile registry and token server on 127.0.0.1.

What servers answer is checked before anything of it reaches a terminal or
another request: too large, too slow, not JSON, a URL that is not http(s),
escape sequences, numbers out of range. The well-behaved path, against our
own token server approved in Chromium, is in tests/e2e.
"""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.peers import LOOPBACK
from tokenserver.credential_helper import device_login
from tokenserver.credential_helper.device_login import (
    DeviceLoginFailed,
    Prompt,
    login,
    registry_challenge,
)

GOOD_START = {
    "device_code": "dc-1",
    "user_code": "BCDF-GHJK",
    "verification_uri": "http://127.0.0.1/device",
    "verification_uri_complete": "http://127.0.0.1/device?user_code=BCDF-GHJK",
    "expires_in": 600,
    "interval": 5,
}


class _Servers:
    """One HTTP server playing the registry (/v2/) and the token server (/token, /device/code)."""

    def __init__(self) -> None:
        self.challenge = 'Bearer realm="{url}/token",service="registry"'
        self.v2_status = 401
        self.start: Any = GOOD_START
        self.polls: list[tuple[int, Any]] = []
        self.posted: list[dict[str, str]] = []
        self.trickle = False
        servers = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if servers.trickle:
                    for byte in body:
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                        time.sleep(0.2)
                else:
                    self.wfile.write(body)

            def do_GET(self) -> None:
                header = servers.challenge.format(url=servers.url)
                self._send(servers.v2_status, b"{}", {"WWW-Authenticate": header})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                form = dict(
                    pair.split("=", 1) for pair in self.rfile.read(length).decode().split("&")
                )
                servers.posted.append(form)
                if self.path == "/device/code":
                    status, answer = 200, servers.start
                else:
                    status, answer = servers.polls.pop(0)
                body = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
                self._send(status, body, {"Content-Type": "application/json"})

        self.httpd = http.server.ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self.url = f"http://{LOOPBACK}:{self.httpd.server_address[1]}"
        self.registry = f"{LOOPBACK}:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture
def servers() -> Iterator[_Servers]:
    running = _Servers()
    yield running
    running.httpd.shutdown()
    running.httpd.server_close()


def _login(servers: _Servers) -> tuple[str, list[Prompt], list[float]]:
    shown: list[Prompt] = []
    slept: list[float] = []  # the time the login waits passes at once: a clock of sleeps
    with httpx.Client(timeout=device_login.TIMEOUT) as client:
        realm, service = registry_challenge(client, servers.registry)
        token = login(
            client, realm, service, shown.append, sleep=slept.append, clock=lambda: sum(slept)
        )
    return token, shown, slept


def test_polls_at_the_servers_pace_until_approved(servers: _Servers) -> None:
    servers.polls = [
        (400, {"error": "authorization_pending"}),
        (400, {"error": "slow_down"}),
        (400, {"error": "authorization_pending"}),
        (200, {"refresh_token": "rt-1", "access_token": "at"}),
    ]
    token, shown, slept = _login(servers)
    assert token == "rt-1"
    assert shown == [Prompt(GOOD_START["verification_uri_complete"], "BCDF-GHJK", 600)]
    assert slept == [5, 5, 10, 10]  # slow_down adds 5 s, for good (RFC 8628 3.5)
    start, *polls = servers.posted
    assert start == {"client_id": device_login.CLIENT_ID, "service": "registry"}
    assert all(p["device_code"] == "dc-1" and p["service"] == "registry" for p in polls)


@pytest.mark.parametrize(
    ("answer", "said"),
    [
        ({"error": "access_denied"}, "denied"),
        ({"error": "expired_token"}, "expired"),
        ({"error": "invalid_grant"}, "refused"),
        (b"<html>", "not JSON"),
        ({"refresh_token": "\x1b[31mred"}, "no usable refresh_token"),
        ({"refresh_token": 12}, "no usable refresh_token"),
    ],
)
def test_a_refusal_ends_the_login(servers: _Servers, answer: Any, said: str) -> None:
    servers.polls = [(400 if isinstance(answer, dict) and "error" in answer else 200, answer)]
    with pytest.raises(DeviceLoginFailed, match=said):
        _login(servers)


@pytest.mark.parametrize(
    ("change", "said"),
    [
        ({"verification_uri_complete": "javascript:alert(1)"}, "verification_uri"),
        ({"verification_uri_complete": "http://x/\x1b]8;;evil\x07"}, "verification_uri"),
        ({"verification_uri_complete": "http://h\u00e9.example/device"}, "verification_uri"),
        ({"user_code": "AB\x1b[2J"}, "user_code"),
        ({"user_code": "A" * 40}, "user_code"),
        ({"device_code": None}, "device_code"),
        ({"device_code": "d" * 5000}, "device_code"),
        ({"expires_in": -1}, "expires_in"),
        ({"expires_in": True}, "expires_in"),
        ({"interval": 0}, "interval"),
        ({"interval": "5"}, "interval"),
    ],
)
def test_a_bad_start_is_never_shown(servers: _Servers, change: dict[str, Any], said: str) -> None:
    servers.start = GOOD_START | change
    with pytest.raises(DeviceLoginFailed, match=said):
        _login(servers)
    assert len(servers.posted) == 1  # nothing polled


def test_numbers_past_their_bounds_are_capped(servers: _Servers) -> None:
    servers.start = GOOD_START | {"expires_in": 10**12, "interval": 10**9}
    servers.polls = [(200, {"refresh_token": "rt"})]
    token, shown, slept = _login(servers)
    assert token == "rt" and shown[0].expires_in == device_login.MAX_WAIT and slept == [60]


def test_a_huge_answer_is_refused(servers: _Servers) -> None:
    servers.start = GOOD_START | {"pad": "x" * (2 * device_login.MAX_ANSWER_BYTES)}
    with pytest.raises(DeviceLoginFailed, match="more than"):
        _login(servers)


def test_a_trickling_answer_is_left(servers: _Servers, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(device_login, "ANSWER_DEADLINE", 1.0)
    servers.trickle = True
    started = time.monotonic()
    with pytest.raises(DeviceLoginFailed, match="too slowly"):
        _login(servers)
    assert time.monotonic() - started < 10


def test_the_login_ends_when_the_code_expires(servers: _Servers) -> None:
    servers.start = GOOD_START | {"expires_in": 12, "interval": 5}
    servers.polls = [(400, {"error": "authorization_pending"})] * 5
    with pytest.raises(DeviceLoginFailed, match="expired"):
        _login(servers)
    assert len(servers.posted) == 1 + 2  # polls at 5 s and 10 s; a third would pass the 12 s


@pytest.mark.parametrize(
    ("status", "challenge"),
    [
        (200, 'Bearer realm="{url}/token"'),
        (401, 'Basic realm="registry"'),
        (401, 'Bearer realm="file:///etc/passwd",service="registry"'),
        (401, "Bearer " + "x" * 10_000),
    ],
)
def test_a_registry_that_names_no_token_server(
    servers: _Servers, status: int, challenge: str
) -> None:
    servers.v2_status, servers.challenge = status, challenge
    with pytest.raises(DeviceLoginFailed, match="does not ask"):
        _login(servers)
    assert servers.posted == []


def test_plain_http_only_for_a_loopback_registry() -> None:
    with httpx.Client(timeout=2.0) as client, pytest.raises(DeviceLoginFailed):
        # No https there, and a name that is not loopback gets no second, plain try.
        registry_challenge(client, "registry.invalid")
