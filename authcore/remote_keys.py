"""The one remote key set: a JWKS fetched from a URL, an OIDC issuer's discovery, or a file.

Both services trust keys published elsewhere: the registry its `auth.token.jwks`
URL, the token server each federation trust's issuer. Whatever the source, a
key set is fetched again only when a token names a key id we do not know,
at most once per `min_refresh` seconds and one fetch at a time, so forged key
ids cannot make us hammer the publisher. A fetch is bounded as a whole
(`FETCH_DEADLINE` for discovery, connections and every read: a server that
trickles its answer a byte at a time must not hold it), in size
(`MAX_DOCUMENT_BYTES`) and in keys (`MAX_KEYS`); only a 200 counts.

A fetch runs in a daemon thread with an event loop of its own, so the
registry's requests (on an event loop: `Fetch.wait_async`) and the token
server's logins (in worker threads: `Fetch.wait`) wait for it the same way,
each for as long as its own policy says, while the fetch goes on to its
deadline. What a caller does while it waits, and with a failure, is its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import httpx

from authcore.capped import read_capped
from authcore.jwk import JWKSKeys, read_jwks

__all__ = [
    "FETCH_DEADLINE",
    "MAX_DOCUMENT_BYTES",
    "MAX_KEYS",
    "Fetch",
    "HTTPOptions",
    "KeySetSource",
    "KeysUnavailable",
    "RemoteKeySet",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

MAX_DOCUMENT_BYTES = 1024 * 1024
MAX_KEYS = 100
# The whole fetch of a key set, discovery and every read included.
FETCH_DEADLINE = 5.0


class KeysUnavailable(Exception):
    """The keys could not be had (down, slow, malformed); the message says why."""


@dataclass(frozen=True)
class KeySetSource:
    """Where a key set is: a JWKS URL, else an OIDC issuer to discover it at, else a file."""

    jwks_uri: str | None = None
    issuer: str | None = None
    jwks_file: Path | None = None

    def __str__(self) -> str:
        return (self.jwks_uri or self.issuer or str(self.jwks_file))[:100]


@dataclass(frozen=True)
class HTTPOptions:
    """How a key set's URLs are fetched: the caller's own trust in the network."""

    https_only: bool = False
    # The CAs to trust (an SSL context), or httpx's default (True).
    verify: ssl.SSLContext | bool = True
    # Whether proxies and CA files named by the environment apply.
    trust_env: bool = True


class Fetch:
    """One fetch of a key set under way, and what those waiting for it learn."""

    def __init__(self) -> None:
        self.began = time.monotonic()
        self.failure: str | None = None
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._wakers: list[Callable[[], None]] = []
        self._cancel: Callable[[], None] | None = None
        self._closed = False

    def wait(self, timeout: float) -> bool:
        """Blocking: whether the fetch ended within `timeout` seconds."""
        return self._done.wait(max(0.0, timeout))

    async def wait_async(self, timeout: float) -> bool:
        """Whether the fetch ended within `timeout` seconds, without holding a thread."""
        loop = asyncio.get_running_loop()
        woken: asyncio.Future[None] = loop.create_future()

        with self._lock:
            if self._done.is_set():
                return True
            self._wakers.append(lambda: _call_soon(loop, lambda: _settle(woken)))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(woken, max(0.0, timeout))
        return self._done.is_set()

    def _finish(self, failure: str | None) -> None:
        self.failure = failure
        with self._lock:
            self._done.set()
            wakers, self._wakers = self._wakers, []
        for wake in wakers:
            wake()

    def _close(self) -> None:
        with self._lock:
            self._closed = True
            cancel = self._cancel
        if cancel is not None:
            cancel()


def _call_soon(loop: asyncio.AbstractEventLoop, callback: Callable[[], object]) -> None:
    with contextlib.suppress(RuntimeError):  # that loop closed meanwhile
        loop.call_soon_threadsafe(callback)


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class RemoteKeySet(Generic[T]):
    """The last keys fetched, as `index` arranges them, and the fetches that renew them."""

    def __init__(
        self,
        source: KeySetSource,
        index: Callable[[JWKSKeys], T],
        *,
        min_refresh: float,
        clock: Callable[[], float] = time.monotonic,
        http: HTTPOptions = HTTPOptions(),
        thread_name: str = "jwks",
    ) -> None:
        self.source, self._index, self._http = source, index, http
        self._min_refresh, self._clock, self._thread_name = min_refresh, clock, thread_name
        self._keys = index(JWKSKeys((), 0))
        self._failure: str | None = None
        self.fetched_at: float | None = None
        self._fetch: Fetch | None = None
        self._lock = threading.Lock()

    @property
    def keys(self) -> T:
        """The keys of the last fetch that succeeded (none before one has)."""
        return self._keys

    @property
    def failure(self) -> str | None:
        """Why the last fetch failed, or None if it did not."""
        return self._failure

    def refetch(self) -> Fetch | None:
        """The fetch under way, or a new one if the last began `min_refresh` ago or more;
        None if it is too soon."""
        with self._lock:
            if self._fetch is not None:
                return self._fetch
            now = self._clock()
            if self.fetched_at is not None and now - self.fetched_at < self._min_refresh:
                return None
            self.fetched_at = now
            fetch = self._fetch = Fetch()
        threading.Thread(
            target=self._run, args=(fetch,), name=self._thread_name, daemon=True
        ).start()
        return fetch

    def close(self) -> None:
        """Stop a fetch under way (at shutdown)."""
        with self._lock:
            fetch = self._fetch
        if fetch is not None:
            fetch._close()

    def _run(self, fetch: Fetch) -> None:
        """The fetch's own thread: it ends by the deadline, whoever still waits for it."""
        keys: T | None = None
        failure: str | None = None
        try:
            keys = self._index(self._load(fetch))
        except KeysUnavailable as exc:
            failure = str(exc)
            log.warning("JWKS fetch failed", extra={"url": str(self.source), "reason": failure})
        except asyncio.CancelledError:
            failure = "closed"
        except Exception as exc:
            # Raised here it would only end the thread, leaving this key set's
            # fetch "under way" for good: the waiters must hear of it instead.
            log.exception("JWKS fetch failed", extra={"url": str(self.source)})
            failure = type(exc).__name__
        with self._lock:
            if keys is not None:
                self._keys = keys
            self._failure = failure
            self._fetch = None
        fetch._finish(failure)

    def _load(self, fetch: Fetch) -> JWKSKeys:
        path = self.source.jwks_file
        if path is not None and self.source.jwks_uri is None and self.source.issuer is None:
            try:
                with path.open("rb") as file:
                    # Read no more than a fetch would: the file may be anything.
                    raw = file.read(MAX_DOCUMENT_BYTES + 1)
                if len(raw) > MAX_DOCUMENT_BYTES:
                    raise KeysUnavailable(f"{path}: larger than 1 MiB")
                document = json.loads(raw)
            except (OSError, ValueError) as exc:
                raise KeysUnavailable(f"{path}: {type(exc).__name__}") from None
        else:
            # httpx's timeouts bound each read, not their sum; the loop's timeout bounds the whole.
            document = asyncio.run(self._fetch_document(fetch))
        try:
            return read_jwks(document, MAX_KEYS)
        except ValueError as exc:
            raise KeysUnavailable(f"{self.source}: {exc}") from None

    async def _fetch_document(self, fetch: Fetch) -> Any:
        loop, task = asyncio.get_running_loop(), asyncio.current_task()
        assert task is not None
        with fetch._lock:
            if fetch._closed:
                raise asyncio.CancelledError
            fetch._cancel = lambda: _call_soon(loop, task.cancel)
        try:
            async with (
                asyncio.timeout(FETCH_DEADLINE),
                httpx.AsyncClient(
                    verify=self._http.verify, timeout=FETCH_DEADLINE, trust_env=self._http.trust_env
                ) as client,
            ):
                uri = self.source.jwks_uri or await self._discover(client)
                return await self._get(client, uri)
        except TimeoutError:
            raise KeysUnavailable(
                f"{self.source}: keys not fetched within {FETCH_DEADLINE:g} s"
            ) from None

    async def _discover(self, client: httpx.AsyncClient) -> str:
        issuer = (self.source.issuer or "").rstrip("/")
        document = await self._get(client, f"{issuer}/.well-known/openid-configuration")
        uri = document.get("jwks_uri") if isinstance(document, Mapping) else None
        if not isinstance(uri, str):
            raise KeysUnavailable("the discovery document names no jwks_uri")
        return uri

    async def _get(self, client: httpx.AsyncClient, url: str) -> Any:
        if self._http.https_only and not url.startswith("https://"):
            raise KeysUnavailable(f"{url[:100]}: keys are fetched over HTTPS only")
        try:
            async with client.stream("GET", url) as answer:
                if answer.status_code != 200:
                    raise KeysUnavailable(f"{url[:100]}: HTTP {answer.status_code}")
                body = await read_capped(answer.aiter_bytes(), MAX_DOCUMENT_BYTES)
                if body is None:
                    raise KeysUnavailable(f"{url[:100]}: larger than 1 MiB")
            return json.loads(body)
        except (httpx.HTTPError, httpx.InvalidURL, ValueError) as exc:
            raise KeysUnavailable(f"{url[:100]}: {type(exc).__name__}") from None
