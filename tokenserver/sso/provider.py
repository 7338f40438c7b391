"""The OpenID provider as this server talks to it: its discovery document and its token
endpoint, over HTTPS with the configured CA file.

What a provider answers is read like anybody's: at most `MAX_ANSWER_BYTES`,
within `DEADLINE` seconds for the whole exchange (a provider that trickles
its answer a byte at a time holds nothing for longer), and only a 200 counts.
The discovery document is kept for `DISCOVERY_TTL` seconds; its `issuer` must
be the configured one, and its endpoints HTTPS URLs.
"""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus, urlsplit

import httpx

from authcore.cache import Cache

__all__ = [
    "DEADLINE",
    "MAX_ANSWER_BYTES",
    "Endpoints",
    "ProviderClient",
    "ProviderRefused",
    "ProviderTokens",
    "ProviderUnavailable",
]

MAX_ANSWER_BYTES = 256 * 1024
DEADLINE = 10.0
DISCOVERY_TTL = 3600.0


class ProviderUnavailable(Exception):
    """The provider could not be asked, or answered something unusable (a 503)."""


class ProviderRefused(Exception):
    """The provider's token endpoint refused the grant: a code reused, expired or of
    another verifier; a refresh token revoked, or of a person it no longer has.
    `error` is its OAuth2 error code (RFC 6749, 5.2), "" if it named none."""

    def __init__(self, message: str, error: str = "") -> None:
        super().__init__(message)
        self.error = error


@dataclass(frozen=True)
class ProviderTokens:
    """What the token endpoint answered: an ID token (none is usual on a refresh) and a
    refresh token, if it gave one (a provider that rotates them gives a new one)."""

    id_token: str | None
    refresh_token: str | None


@dataclass(frozen=True)
class Endpoints:
    authorization: str
    token: str


def _https_url(document: Mapping[str, Any], key: str) -> str:
    value = document.get(key)
    if not isinstance(value, str) or len(value) > 1024 or urlsplit(value).scheme != "https":
        raise ProviderUnavailable(f"the discovery document's {key} is not an https:// URL")
    return value


def _error_code(body: bytes | bytearray) -> str:
    """The `error` of an OAuth2 error answer, if it is one and the code is well formed."""
    try:
        document = json.loads(body)
    except ValueError:
        return ""
    error = document.get("error") if isinstance(document, dict) else None
    # RFC 6749, 5.2: printable ASCII without quote or backslash.
    if isinstance(error, str) and 0 < len(error) <= 64 and error.isascii() and error.isprintable():
        return error if not set(error) & {'"', "\\"} else ""
    return ""


class ProviderClient:
    def __init__(
        self,
        issuer: str,
        ca_file: Path | None,
        client_id: str,
        client_secret: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.issuer = issuer
        self._tls = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
        # RFC 6749, 2.3.1: each form-encoded, then Basic.
        pair = f"{quote_plus(client_id)}:{quote_plus(client_secret)}".encode()
        self._authorization = "Basic " + base64.b64encode(pair).decode()
        # The discovery document's endpoints, read again after an hour.
        self._endpoints: Cache[str, Endpoints] = Cache(1, ttl=DISCOVERY_TTL, clock=clock)

    async def endpoints(self) -> Endpoints:
        cached = self._endpoints.get(self.issuer)
        if cached is not None:
            return cached
        url = f"{self.issuer}/.well-known/openid-configuration"
        document = await self._exchange("GET", url)
        if document.get("issuer") != self.issuer:
            raise ProviderUnavailable("the discovery document names another issuer")
        endpoints = Endpoints(
            _https_url(document, "authorization_endpoint"), _https_url(document, "token_endpoint")
        )
        return self._endpoints.put(self.issuer, endpoints)

    async def redeem(self, code: str, redirect_uri: str, code_verifier: str) -> ProviderTokens:
        """What the provider gives for this authorization code: an ID token always."""
        tokens = await self._token(
            {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": redirect_uri,
                "code_verifier": code_verifier,
            }
        )
        if tokens.id_token is None:
            raise ProviderUnavailable("the token endpoint answered no ID token")
        return tokens

    async def refresh(self, refresh_token: str) -> ProviderTokens:
        """Ask about a person again with their refresh token (RFC 6749, 6)."""
        return await self._token({"grant_type": "refresh_token", "refresh_token": refresh_token})

    async def _token(self, form: dict[str, str]) -> ProviderTokens:
        endpoint = (await self.endpoints()).token
        headers = {"Accept": "application/json", "Authorization": self._authorization}
        answer = await self._exchange("POST", endpoint, data=form, headers=headers)
        id_token, refresh_token = answer.get("id_token"), answer.get("refresh_token")
        return ProviderTokens(
            id_token if isinstance(id_token, str) else None,
            refresh_token if isinstance(refresh_token, str) and refresh_token else None,
        )

    async def _exchange(self, method: str, url: str, **options: Any) -> dict[str, Any]:
        """The JSON object the provider answers: a 200 within the deadline and size."""
        where = f"{method} {url[:100]}"
        try:
            async with (
                asyncio.timeout(DEADLINE),
                httpx.AsyncClient(verify=self._tls, timeout=DEADLINE, trust_env=False) as client,
            ):
                request = client.build_request(method, url, **options)
                # Raw bytes, counted as they come: no compressed answer to inflate.
                request.headers["Accept-Encoding"] = "identity"
                answer = await client.send(request, stream=True)
                try:
                    body = bytearray()
                    async for chunk in answer.aiter_raw():
                        body += chunk
                        if len(body) > MAX_ANSWER_BYTES:
                            raise ProviderUnavailable(f"{where}: the answer is too large")
                finally:
                    await answer.aclose()
        except TimeoutError:
            raise ProviderUnavailable(f"{where}: no answer within {DEADLINE:g} s") from None
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise ProviderUnavailable(f"{where}: {type(exc).__name__}") from None
        if answer.status_code in (400, 401) and method == "POST":
            error = _error_code(body)
            raise ProviderRefused(f"{where}: HTTP {answer.status_code} {error}".rstrip(), error)
        if answer.status_code != 200:
            raise ProviderUnavailable(f"{where}: HTTP {answer.status_code}")
        try:
            document = json.loads(body)
        except ValueError:
            raise ProviderUnavailable(f"{where}: not JSON") from None
        if not isinstance(document, dict):
            raise ProviderUnavailable(f"{where}: not a JSON object")
        return document
