"""The one remote key set, against a real HTTP server on 127.0.0.1.

Fetched again at most once per `min_refresh` (whatever number of unknown
kids ask), one fetch in flight however many threads and tasks wait for it,
a body past the size bound refused, discovery followed, the keys of the last
good fetch kept through a failed one.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from authcore.jwk import JWKSKeys, public_jwk
from authcore.remote_keys import (
    MAX_DOCUMENT_BYTES,
    MAX_KEYS,
    HTTPOptions,
    KeySetSource,
    RemoteKeySet,
)

KEY = ec.generate_private_key(ec.SECP256R1()).public_key()


class _Publisher:
    """A JWKS (and a discovery document naming it) served over HTTP on 127.0.0.1."""

    def __init__(self) -> None:
        self.document: Any = {"keys": [public_jwk(KEY, "k1", "ES256")]}
        self.status = 200
        self.requests: list[str] = []
        # Cleared, a request is held until it is set again: a fetch kept in flight.
        self.answering = threading.Event()
        self.answering.set()
        publisher = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                publisher.requests.append(self.path)
                publisher.answering.wait(10)
                if self.path == "/.well-known/openid-configuration":
                    body = json.dumps({"jwks_uri": f"{publisher.url}/jwks"}).encode()
                else:
                    document = publisher.document
                    body = (
                        document if isinstance(document, bytes) else json.dumps(document).encode()
                    )
                self.send_response(publisher.status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.answering.set()
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def publisher() -> Iterator[_Publisher]:
    served = _Publisher()
    yield served
    served.close()


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _kids(read: JWKSKeys) -> tuple[str | None, ...]:
    return tuple(kid for kid, _ in read.keys)


def _key_set(url: str, clock: _Clock, **options: Any) -> RemoteKeySet[tuple[str | None, ...]]:
    return RemoteKeySet(KeySetSource(jwks_uri=url), _kids, min_refresh=60, clock=clock, **options)


def _fetched(keys: RemoteKeySet[Any]) -> bool:
    fetch = keys.refetch()
    assert fetch is not None
    assert fetch.wait(10)
    return fetch.failure is None


def test_an_unknown_kid_refetches_at_most_once_per_interval(publisher: _Publisher) -> None:
    clock = _Clock()
    keys = _key_set(f"{publisher.url}/jwks", clock)
    assert keys.keys == () and keys.fetched_at is None
    assert _fetched(keys) and keys.keys == ("k1",)
    publisher.document = {"keys": [public_jwk(KEY, "k2", "ES256")]}
    # Any number of unknown kids within the minute: no new fetch.
    for step in range(20):
        clock.now = 1000.0 + step * 3
        assert keys.refetch() is None
    assert len(publisher.requests) == 1 and keys.keys == ("k1",)
    clock.now = 1060.0
    assert _fetched(keys) and keys.keys == ("k2",)
    assert len(publisher.requests) == 2 and keys.fetched_at == 1060.0


def test_one_fetch_in_flight_for_every_thread_and_task(publisher: _Publisher) -> None:
    clock = _Clock()
    keys = _key_set(f"{publisher.url}/jwks", clock, thread_name="jwks-test")
    publisher.answering.clear()
    callers = 30

    def in_a_thread(_: int) -> bool:
        fetch = keys.refetch()
        return fetch is not None and fetch.wait(10) and fetch.failure is None

    async def on_a_loop() -> list[bool]:
        async def one() -> bool:
            fetch = keys.refetch()
            return fetch is not None and await fetch.wait_async(10) and fetch.failure is None

        return await asyncio.gather(*(one() for _ in range(callers)))

    with concurrent.futures.ThreadPoolExecutor(callers + 1) as pool:
        threads = [pool.submit(in_a_thread, i) for i in range(callers)]
        tasks = pool.submit(asyncio.run, on_a_loop())
        # Everyone is waiting for the one request the publisher holds.
        while len(publisher.requests) < 1:
            threading.Event().wait(0.01)
        assert not any(t.done() for t in threads) and not tasks.done()
        # Time passes, but a fetch under way is joined, never doubled.
        clock.now += 3600
        assert keys.refetch() is not None
        publisher.answering.set()
        assert all(t.result() for t in threads) and all(tasks.result())
    assert publisher.requests == ["/jwks"]
    assert keys.keys == ("k1",)


def test_a_short_wait_gives_up_while_the_fetch_goes_on(publisher: _Publisher) -> None:
    keys = _key_set(f"{publisher.url}/jwks", _Clock())
    publisher.answering.clear()
    fetch = keys.refetch()
    assert fetch is not None
    assert fetch.wait(0.05) is False
    assert asyncio.run(fetch.wait_async(0.05)) is False
    publisher.answering.set()
    assert fetch.wait(10) and keys.keys == ("k1",)


def test_a_body_past_the_bound_is_refused_and_the_last_keys_kept(
    publisher: _Publisher,
) -> None:
    clock = _Clock()
    keys = _key_set(f"{publisher.url}/jwks", clock)
    assert _fetched(keys)
    good = json.dumps({"keys": [public_jwk(KEY, "k2", "ES256")]}).encode()
    publisher.document = good[:-1] + b" " * MAX_DOCUMENT_BYTES + b"}"
    clock.now += 60
    assert not _fetched(keys)
    assert keys.failure is not None and "larger than 1 MiB" in keys.failure
    assert keys.keys == ("k1",)
    # Just within the bound, the same document is read.
    publisher.document = good[:-1] + b" " * (MAX_DOCUMENT_BYTES - len(good)) + b"}"
    clock.now += 60
    assert _fetched(keys) and keys.keys == ("k2",) and keys.failure is None


@pytest.mark.parametrize(
    ("status", "document", "reason"),
    [
        (404, {"keys": []}, "HTTP 404"),
        (302, {"keys": []}, "HTTP 302"),
        (200, b"not json", "JSONDecodeError"),
        (200, {"no": "keys"}, "not a JWKS document"),
    ],
)
def test_only_a_200_with_a_jwks_is_a_key_set(
    publisher: _Publisher, status: int, document: Any, reason: str
) -> None:
    publisher.status, publisher.document = status, document
    keys = _key_set(f"{publisher.url}/jwks", _Clock())
    assert not _fetched(keys)
    assert keys.failure is not None and reason in keys.failure


def test_no_more_than_the_key_bound_is_taken(publisher: _Publisher) -> None:
    publisher.document = {"keys": [public_jwk(KEY, f"k{i}", "ES256") for i in range(MAX_KEYS + 5)]}
    keys = _key_set(f"{publisher.url}/jwks", _Clock())
    assert _fetched(keys) and len(keys.keys) == MAX_KEYS


def test_discovery_finds_the_jwks_and_https_only_refuses_http(publisher: _Publisher) -> None:
    discovered = RemoteKeySet(
        KeySetSource(issuer=publisher.url + "/"), _kids, min_refresh=60, clock=_Clock()
    )
    assert _fetched(discovered) and discovered.keys == ("k1",)
    assert publisher.requests == ["/.well-known/openid-configuration", "/jwks"]
    strict = _key_set(f"{publisher.url}/jwks", _Clock(), http=HTTPOptions(https_only=True))
    assert not _fetched(strict)
    assert strict.failure is not None and "HTTPS only" in strict.failure
    assert len(publisher.requests) == 2


def test_a_file_past_the_bound_is_refused_as_a_fetch_would_be(tmp_path: Path) -> None:
    good = json.dumps({"keys": [public_jwk(KEY, "k1", "ES256")]}).encode()
    path = tmp_path / "jwks.json"
    keys = RemoteKeySet(KeySetSource(jwks_file=path), _kids, min_refresh=0, clock=_Clock())
    path.write_bytes(good[:-1] + b" " * MAX_DOCUMENT_BYTES + b"}")
    assert not _fetched(keys)
    assert keys.failure is not None and "larger than 1 MiB" in keys.failure
    assert keys.keys == ()
    # Just within the bound, the same document is read.
    path.write_bytes(good[:-1] + b" " * (MAX_DOCUMENT_BYTES - len(good)) + b"}")
    assert _fetched(keys) and keys.keys == ("k1",) and keys.failure is None
