"""The signing keys of one OIDC issuer: a JWKS from a file, a URL, or the issuer's discovery.

Fetched over HTTPS only (with the trust's CA file, else the system's), bounded
in size and time, cached, and fetched again when a token names a key id we do
not know — at most once a minute, with one fetch in flight, so forged key ids
cannot make us hammer the issuer.
"""

from __future__ import annotations

import json
import logging
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx
import jwt

from authcore.jwk import PublicKeyType

__all__ = ["KeySource", "KeysUnavailable"]

log = logging.getLogger(__name__)

MAX_DOCUMENT_BYTES = 1024 * 1024
MAX_KEYS = 100
FETCH_TIMEOUT = 5.0
REFETCH_INTERVAL = 60.0


class KeysUnavailable(Exception):
    """The issuer's keys could not be had (down, slow, malformed): a 503, not a wrong password."""


def _parse(document: object) -> dict[str, PublicKeyType]:
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise KeysUnavailable("not a JWKS document")
    keys: dict[str, PublicKeyType] = {}
    for entry in document["keys"][:MAX_KEYS]:
        if not isinstance(entry, dict) or not isinstance(entry.get("kid"), str):
            continue
        try:
            key = jwt.PyJWK.from_dict(entry).key
        except (jwt.PyJWKError, jwt.InvalidKeyError, KeyError, TypeError, ValueError):
            continue  # an entry we cannot use is skipped, not fatal
        if isinstance(key, PublicKeyType):
            keys[entry["kid"]] = key
    return keys


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
        self._lock = threading.Lock()

    def key(self, kid: str) -> PublicKeyType | None:
        """Blocking: the key of this id, fetching the set again if it is new to us."""
        key = self._keys.get(kid)
        if key is not None:
            return key
        with self._lock:
            key = self._keys.get(kid)
            now = self._clock()
            if key is None and (
                self._fetched_at is None or now - self._fetched_at >= REFETCH_INTERVAL
            ):
                self._fetched_at = now
                self._failure = None
                try:
                    self._keys = self._load()
                except KeysUnavailable as exc:
                    self._failure = str(exc)
                    raise
                key = self._keys.get(kid)
            elif key is None and self._failure is not None:
                # Until the next fetch, the issuer is as unreachable as it was:
                # its tokens are not wrong passwords.
                raise KeysUnavailable(self._failure)
        return key

    def _load(self) -> dict[str, PublicKeyType]:
        if self._file is not None:
            try:
                return _parse(json.loads(self._file.read_bytes()[:MAX_DOCUMENT_BYTES]))
            except (OSError, ValueError) as exc:
                raise KeysUnavailable(f"{self._file}: {type(exc).__name__}") from None
        uri = self._jwks_uri or self._discover()
        return _parse(self._get(uri))

    def _discover(self) -> str:
        document = self._get(f"{self._issuer}/.well-known/openid-configuration")
        uri = document.get("jwks_uri") if isinstance(document, Mapping) else None
        if not isinstance(uri, str):
            raise KeysUnavailable("the discovery document names no jwks_uri")
        return uri

    def _get(self, url: str) -> Any:
        if not url.startswith("https://"):
            raise KeysUnavailable(f"{url[:100]}: keys are fetched over HTTPS only")
        try:
            with (
                httpx.Client(verify=self._tls, timeout=FETCH_TIMEOUT, trust_env=False) as client,
                client.stream("GET", url) as answer,
            ):
                if answer.status_code != 200:
                    raise KeysUnavailable(f"{url[:100]}: HTTP {answer.status_code}")
                body = bytearray()
                for chunk in answer.iter_bytes():
                    body += chunk
                    if len(body) > MAX_DOCUMENT_BYTES:
                        raise KeysUnavailable(f"{url[:100]}: larger than 1 MiB")
            return json.loads(body)
        except (httpx.HTTPError, ValueError) as exc:
            log.warning(
                "OIDC keys not fetched", extra={"url": url[:200], "reason": type(exc).__name__}
            )
            raise KeysUnavailable(f"{url[:100]}: {type(exc).__name__}") from None
