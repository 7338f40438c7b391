"""Where trusted token-signing keys come from: a certificate bundle and/or a JWKS.

A bundle is the Go registry's `rootcertbundle` (PEM certificates; each key is
known by its libtrust id, and the certificates anchor `x5c` chains). A JWKS
may be a file or a URL; a URL is fetched again when a token names a key id
we do not know, but not more often than a minimum interval, so forged kids
cannot make us hammer the token server.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from authcore.jwk import PublicKeyType, libtrust_kid

__all__ = ["KeyStore", "TrustedKeys", "load_bundle", "parse_jwks"]

log = logging.getLogger(__name__)

MAX_JWKS_BYTES = 1024 * 1024


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
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError("not a JWKS document")
    by_kid: dict[str, PublicKeyType] = {}
    for entry in document["keys"]:
        try:
            key = jwt.PyJWK.from_dict(entry).key
        except (jwt.PyJWKError, jwt.InvalidKeyError, KeyError, TypeError, ValueError):
            log.warning("JWKS entry ignored: not a usable public key")
            continue
        if not isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
            continue
        by_kid[libtrust_kid(key)] = key
        if isinstance(entry.get("kid"), str):
            by_kid[entry["kid"]] = key
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
        self._lock = asyncio.Lock()

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

    async def refresh(self) -> bool:
        """Fetch the JWKS URL again if allowed now; True if the keys may have changed."""
        if self._url is None:
            return False
        async with self._lock:
            now = self._clock()
            if self._fetched_at is not None and now - self._fetched_at < self._min_refresh:
                return False
            self._fetched_at = now
            try:
                async with httpx.AsyncClient(timeout=5) as client:
                    response = await client.get(self._url)
                    response.raise_for_status()
                    if len(response.content) > MAX_JWKS_BYTES:
                        raise ValueError("JWKS too large")
                    self._remote = parse_jwks(response.json())
            except (httpx.HTTPError, ValueError) as exc:
                log.warning("JWKS fetch failed", extra={"url": self._url, "reason": str(exc)})
                return False
            return True
