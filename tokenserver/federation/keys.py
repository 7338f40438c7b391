"""The signing keys of one OIDC issuer: a JWKS from a file, a URL, or the issuer's discovery.

Fetched over HTTPS only (with the trust's CA file, else the system's), bounded
in size and time, cached, and fetched again when a token names a key id we do
not know — at most once a minute, with one fetch in flight, so forged key ids
cannot make us hammer the issuer.

Logins run in the server's worker threads, and a key set's issuer may be slow
or hostile (a `jwks_uri` can send its answer a byte at a time). So a fetch
runs in a thread of its own under one deadline for all of it (discovery,
connections, every read), and a login waits for it only briefly, and only
while few others do: an issuer that cannot answer in time is "keys
unavailable" (a 503) without holding the threads every other login needs.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx

from authcore.jwk import PublicKeyType, read_jwks

__all__ = ["KeySource", "KeysUnavailable"]

log = logging.getLogger(__name__)

MAX_DOCUMENT_BYTES = 1024 * 1024
MAX_KEYS = 100
# The whole fetch of a key set, discovery and every read included.
FETCH_DEADLINE = 5.0
# How long after a fetch began the logins that need it keep waiting for it.
# Shorter than the deadline: a worker thread is never held for a whole fetch.
WAIT = 2.0
# Logins waiting for keys at once, over every key set: the rest of the worker
# threads (anyio's 40 by default) stay free for logins that need no fetch.
MAX_WAITING = 16
REFETCH_INTERVAL = 60.0

_waiting = threading.BoundedSemaphore(MAX_WAITING)


class KeysUnavailable(Exception):
    """The issuer's keys could not be had (down, slow, malformed): a 503, not a wrong password."""


def _parse(document: object) -> dict[str, PublicKeyType]:
    try:
        read = read_jwks(document, MAX_KEYS)
    except ValueError as exc:
        raise KeysUnavailable(str(exc)) from None
    # A token names its key by kid: a key published without one cannot be named.
    return {kid: key for kid, key in read.keys if kid is not None}


class KeySource:
    def __init__(
        self,
        issuer: str,
        *,
        jwks_uri: str | None = None,
        jwks_file: Path | None = None,
        ca_file: Path | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._issuer = issuer.rstrip("/")
        self._jwks_uri = jwks_uri
        self._file = jwks_file
        self._clock = clock
        try:
            self._tls = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            # Checked when the trust was made, but gone or spoilt since: the
            # issuer cannot be reached, as when it is down.
            raise KeysUnavailable(f"ca_file {ca_file}: {type(exc).__name__}") from None
        self._keys: dict[str, PublicKeyType] = {}
        self._fetched_at: float | None = None
        self._failure: str | None = None
        self._fetch: _Fetch | None = None
        self._lock = threading.Lock()

    def key(self, kid: str) -> PublicKeyType | None:
        """Blocking, briefly: the key of this id, fetching the set again if it is new to us."""
        key = self._keys.get(kid)
        if key is not None:
            return key
        with self._lock:
            key = self._keys.get(kid)
            if key is not None:
                return key
            fetch = self._fetch
            if fetch is None:
                now = self._clock()
                if self._fetched_at is not None and now - self._fetched_at < REFETCH_INTERVAL:
                    if self._failure is not None:
                        # Until the next fetch, the issuer is as unreachable as it
                        # was: its tokens are not wrong passwords.
                        raise KeysUnavailable(self._failure)
                    return None
                self._fetched_at = now
                fetch = self._fetch = _Fetch(time.monotonic() + WAIT)
                threading.Thread(
                    target=self._run, args=(fetch,), name="oidc-keys", daemon=True
                ).start()
        if not _waiting.acquire(blocking=False):
            raise KeysUnavailable("too many logins are waiting for issuers' keys")
        try:
            done = fetch.done.wait(max(0.0, fetch.give_up_at - time.monotonic()))
        finally:
            _waiting.release()
        if not done:
            raise KeysUnavailable("the issuer's keys are still being fetched")
        if fetch.failure is not None:
            raise KeysUnavailable(fetch.failure)
        return self._keys.get(kid)

    def _run(self, fetch: _Fetch) -> None:
        """The fetch's own thread: it ends by the deadline, whoever still waits for it."""
        keys: dict[str, PublicKeyType] | None = None
        try:
            keys = self._load()
        except KeysUnavailable as exc:
            fetch.failure = str(exc)
        except Exception as exc:
            # Raised here it would only end the thread, leaving this key set's
            # fetch "under way" for good: the logins must hear of it instead.
            log.exception("OIDC keys not fetched", extra={"issuer": self._issuer[:200]})
            fetch.failure = type(exc).__name__
        with self._lock:
            if keys is not None:
                self._keys = keys
            self._failure = fetch.failure
            self._fetch = None
        fetch.done.set()

    def _load(self) -> dict[str, PublicKeyType]:
        if self._file is not None:
            try:
                return _parse(json.loads(self._file.read_bytes()[:MAX_DOCUMENT_BYTES]))
            except (OSError, ValueError) as exc:
                raise KeysUnavailable(f"{self._file}: {type(exc).__name__}") from None
        # httpx's timeouts bound each read, not their sum; a cancellation by
        # the event loop's timeout bounds the whole.
        return asyncio.run(self._fetch_all())

    async def _fetch_all(self) -> dict[str, PublicKeyType]:
        try:
            async with (
                asyncio.timeout(FETCH_DEADLINE),
                httpx.AsyncClient(
                    verify=self._tls, timeout=FETCH_DEADLINE, trust_env=False
                ) as client,
            ):
                uri = self._jwks_uri or await self._discover(client)
                return _parse(await self._get(client, uri))
        except TimeoutError:
            log.warning(
                "OIDC keys not fetched",
                extra={"issuer": self._issuer[:200], "reason": "deadline"},
            )
            raise KeysUnavailable(
                f"{self._issuer[:100]}: keys not fetched within {FETCH_DEADLINE:g} s"
            ) from None

    async def _discover(self, client: httpx.AsyncClient) -> str:
        document = await self._get(client, f"{self._issuer}/.well-known/openid-configuration")
        uri = document.get("jwks_uri") if isinstance(document, Mapping) else None
        if not isinstance(uri, str):
            raise KeysUnavailable("the discovery document names no jwks_uri")
        return uri

    async def _get(self, client: httpx.AsyncClient, url: str) -> Any:
        if not url.startswith("https://"):
            raise KeysUnavailable(f"{url[:100]}: keys are fetched over HTTPS only")
        try:
            async with client.stream("GET", url) as answer:
                if answer.status_code != 200:
                    raise KeysUnavailable(f"{url[:100]}: HTTP {answer.status_code}")
                body = bytearray()
                async for chunk in answer.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_DOCUMENT_BYTES:
                        raise KeysUnavailable(f"{url[:100]}: larger than 1 MiB")
            return json.loads(body)
        except (httpx.HTTPError, httpx.InvalidURL, ValueError) as exc:
            log.warning(
                "OIDC keys not fetched", extra={"url": url[:200], "reason": type(exc).__name__}
            )
            raise KeysUnavailable(f"{url[:100]}: {type(exc).__name__}") from None


class _Fetch:
    """One fetch of a key set under way, and what the logins waiting for it learn."""

    def __init__(self, give_up_at: float) -> None:
        self.give_up_at = give_up_at
        self.done = threading.Event()
        self.failure: str | None = None
