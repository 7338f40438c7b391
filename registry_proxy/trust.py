"""Where trusted token-signing keys come from: a certificate bundle and/or a JWKS.

A bundle is the Go registry's `rootcertbundle` (PEM certificates; each key is
known by its libtrust id, and the certificates anchor `x5c` chains). A JWKS
may be a file or a URL; a URL is fetched again when a token names a key id
we do not know, but not more often than a minimum interval, so forged kids
cannot make us hammer the token server.

A fetch of the URL is bounded as a whole (connection, every read, the size),
not read by read: a server that trickles its answer must not keep requests
waiting on it. One fetch is under way at a time; the requests that need it
wait for it briefly, then are answered with what is known (an unknown key is
a 401), while the fetch goes on to its deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from authcore.jwk import PublicKeyType, libtrust_kid, read_jwks

__all__ = ["KeyStore", "TrustedKeys", "load_bundle", "parse_jwks"]

log = logging.getLogger(__name__)

MAX_JWKS_BYTES = 1024 * 1024
# The whole fetch of the JWKS URL, connection and every read included.
JWKS_DEADLINE = 5.0
# How long after a fetch began the requests that need it keep waiting for it.
JWKS_WAIT = 2.0


@dataclass(frozen=True)
class TrustedKeys:
    by_kid: Mapping[str, PublicKeyType] = field(default_factory=dict)
    roots: tuple[x509.Certificate, ...] = ()

    def merged(self, other: TrustedKeys) -> TrustedKeys:
        return TrustedKeys({**self.by_kid, **other.by_kid}, self.roots + other.roots)


def load_bundle(path: Path) -> TrustedKeys:
    certs = x509.load_pem_x509_certificates(path.read_bytes())
    by_kid: dict[str, PublicKeyType] = {}
    for cert in certs:
        key = cert.public_key()
        if isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
            by_kid[libtrust_kid(key)] = key
    return TrustedKeys(by_kid, tuple(certs))


def parse_jwks(document: Any) -> TrustedKeys:
    """Keys by their published kid and by their libtrust id (tokens may use either)."""
    read = read_jwks(document)
    if read.skipped:
        log.warning("JWKS entries ignored: not usable public keys", extra={"count": read.skipped})
    by_kid: dict[str, PublicKeyType] = {}
    for kid, key in read.keys:
        by_kid[libtrust_kid(key)] = key
        if kid is not None:
            by_kid[kid] = key
    return TrustedKeys(by_kid)


class KeyStore:
    """The current trusted keys, refreshed from a JWKS URL when asked for an unknown kid."""

    def __init__(
        self,
        static: TrustedKeys,
        jwks_url: str | None = None,
        min_refresh: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._static = static
        self._url = jwks_url
        self._min_refresh = min_refresh
        self._clock = clock
        self._remote = TrustedKeys()
        self._fetched_at: float | None = None
        self._fetching: asyncio.Task[bool] | None = None
        self._fetch_began = 0.0

    @classmethod
    def from_sources(cls, bundle: Path | None, jwks: str | None, min_refresh: float) -> KeyStore:
        static = TrustedKeys()
        if bundle is not None:
            static = static.merged(load_bundle(bundle))
        url = None
        if jwks is not None:
            if jwks.startswith(("http://", "https://")):
                url = jwks
            else:
                static = static.merged(parse_jwks(json.loads(Path(jwks).read_text())))
        return cls(static, url, min_refresh)

    @property
    def current(self) -> TrustedKeys:
        return self._static.merged(self._remote)

    async def refresh(self, wait: float = JWKS_WAIT) -> bool:
        """Fetch the JWKS URL again if allowed now; True if the keys may have changed.

        Waits for the fetch (this call's or one under way) until `wait`
        seconds after it began; after that the fetch goes on without us.
        """
        if self._url is None:
            return False
        fetching = self._fetching
        if fetching is None:
            now = self._clock()
            if self._fetched_at is not None and now - self._fetched_at < self._min_refresh:
                return False
            self._fetched_at = now
            self._fetch_began = time.monotonic()
            fetching = self._fetching = asyncio.create_task(self._fetch(self._url), name="jwks")
        remaining = self._fetch_began + wait - time.monotonic()
        if remaining <= 0:
            return False
        try:
            # Shielded: a waiter that gives up (or is cancelled) leaves the fetch to the others.
            return await asyncio.wait_for(asyncio.shield(fetching), remaining)
        except TimeoutError:
            return False

    async def _fetch(self, url: str) -> bool:
        try:
            async with (
                asyncio.timeout(JWKS_DEADLINE),
                httpx.AsyncClient(timeout=JWKS_DEADLINE) as client,
                client.stream("GET", url) as response,
            ):
                response.raise_for_status()
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_JWKS_BYTES:
                        raise ValueError("JWKS too large")
            self._remote = parse_jwks(json.loads(body))
        except TimeoutError:
            log.warning(
                "JWKS fetch failed",
                extra={"url": self._url, "reason": f"not fetched within {JWKS_DEADLINE:g} s"},
            )
            return False
        except (httpx.HTTPError, httpx.InvalidURL, ValueError) as exc:
            log.warning("JWKS fetch failed", extra={"url": self._url, "reason": str(exc)})
            return False
        finally:
            self._fetching = None
        return True

    async def aclose(self) -> None:
        """Stop a fetch under way (at shutdown)."""
        fetching = self._fetching
        if fetching is not None:
            fetching.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await fetching
