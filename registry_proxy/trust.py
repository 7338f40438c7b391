"""Where trusted token-signing keys come from: a certificate bundle and/or a JWKS.

A bundle is the Go registry's `rootcertbundle` (PEM certificates; each key is
known by its libtrust id, and the certificates anchor `x5c` chains). A JWKS
may be a file or a URL; a URL is the one remote key set of
`authcore.remote_keys`, fetched again when a token names a key id we do not
know, at most every `jwks_min_refresh` seconds, one fetch at a time, bounded
as a whole. The requests that need a fetch wait for it briefly, then are
answered with what is known (an unknown key is a 401), while the fetch goes
on to its deadline.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from authcore.jwk import JWKSKeys, PublicKeyType, libtrust_kid, read_jwks
from authcore.remote_keys import KeySetSource, RemoteKeySet

__all__ = ["KeyStore", "TrustedKeys", "load_bundle", "parse_jwks"]

log = logging.getLogger(__name__)

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
    return _index(read_jwks(document))


def _index(read: JWKSKeys) -> TrustedKeys:
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
        self.remote = (
            None
            if jwks_url is None
            else RemoteKeySet(
                KeySetSource(jwks_uri=jwks_url), _index, min_refresh=min_refresh, clock=clock
            )
        )

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
        if self.remote is None:
            return self._static
        return self._static.merged(self.remote.keys)

    async def refresh(self, wait: float = JWKS_WAIT) -> bool:
        """Fetch the JWKS URL again if allowed now; True if the keys may have changed.

        Waits for the fetch (this call's or one under way) until `wait`
        seconds after it began; after that the fetch goes on without us.
        """
        fetch = None if self.remote is None else self.remote.refetch()
        if fetch is None:
            return False
        done = await fetch.wait_async(fetch.began + wait - time.monotonic())
        return done and fetch.failure is None

    async def aclose(self) -> None:
        """Stop a fetch under way (at shutdown)."""
        if self.remote is not None:
            self.remote.close()
