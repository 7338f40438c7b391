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
    "ProviderUnavailable",
]

MAX_ANSWER_BYTES = 256 * 1024
DEADLINE = 10.0
DISCOVERY_TTL = 3600.0


class ProviderUnavailable(Exception):
    """The provider could not be asked, or answered something unusable (a 503)."""


class ProviderRefused(Exception):
    """The provider's token endpoint refused the code (reused, expired, PKCE mismatch)."""


@dataclass(frozen=True)
class Endpoints:
    authorization: str
    token: str


def _https_url(document: Mapping[str, Any], key: str) -> str:
    value = document.get(key)
    if not isinstance(value, str) or len(value) > 1024 or urlsplit(value).scheme != "https":
        raise ProviderUnavailable(f"the discovery document's {key} is not an https:// URL")
    return value


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

    async def redeem(self, code: str, redirect_uri: str, code_verifier: str) -> str:
        """The ID token the provider gives for this authorization code."""
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": code_verifier,
        }
        endpoint = (await self.endpoints()).token
        headers = {"Accept": "application/json", "Authorization": self._authorization}
        answer = await self._exchange("POST", endpoint, data=form, headers=headers)
        id_token = answer.get("id_token")
        if not isinstance(id_token, str):
            raise ProviderUnavailable("the token endpoint answered no ID token")
        return id_token

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
            raise ProviderRefused(f"{where}: HTTP {answer.status_code}")
        if answer.status_code != 200:
            raise ProviderUnavailable(f"{where}: HTTP {answer.status_code}")
        try:
            document = json.loads(body)
        except ValueError:
            raise ProviderUnavailable(f"{where}: not JSON") from None
        if not isinstance(document, dict):
            raise ProviderUnavailable(f"{where}: not a JSON object")
        return document
