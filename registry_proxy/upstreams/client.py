"""The client of one upstream registry: its manifests and blobs, pulled as a registry client does.

Requests go out anonymously, or with the token held for the repository's
scope, or with Basic once the upstream asked for it; a 401 is answered once
(`tokens.py` for `Bearer`, the credentials for `Basic`) and a second one is
`UpstreamDenied`, unless it refused credentials its `CredentialSource` can
renew (`credentials.py`): then they are asked for once more and sent once
more, so one request runs a credential helper again at most once. Only a
401 from the upstream's own origin is answered: a challenge from a host it
redirected to would send our credentials where the upstream pointed. Redirects are followed by hand
(`redirects.py`), with `Authorization` for the upstream's origin only.

Everything is bounded: one pooled `httpx.AsyncClient` that reads no
environment; a manifest, a HEAD, a token and a blob's answer head each
within `timeout` as a whole (an upstream that trickles a byte a second is
cut), a blob's body within `timeout` per read; a manifest and a token
answer in size (`answers.read_capped`). Nothing here is global: the caller
counts what it wants to count.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import http.cookiejar
import re
import ssl
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from authcore.cache import Cache
from registry_proxy.reference import Digest, check_name, check_tag, is_digest
from registry_proxy.upstreams.answers import (
    content_length,
    describe,
    network_errors,
    read_capped,
    refusal,
)
from registry_proxy.upstreams.challenge import BadChallenge, Challenge, parse_challenges
from registry_proxy.upstreams.credentials import Credentials, CredentialSource, StaticCredentials
from registry_proxy.upstreams.errors import (
    UpstreamDenied,
    UpstreamError,
    UpstreamInvalid,
    UpstreamNotFound,
    UpstreamUnavailable,
)
from registry_proxy.upstreams.redirects import origin_of, send_following
from registry_proxy.upstreams.tokens import Token, TokenKey, Tokens, request_token, token_key

__all__ = [
    "MAX_MANIFEST_BYTES",
    "FetchedManifest",
    "ManifestHead",
    "UpstreamBlob",
    "UpstreamClient",
    "UpstreamDenied",
    "UpstreamError",
    "UpstreamInvalid",
    "UpstreamNotFound",
    "UpstreamUnavailable",
]

MAX_MANIFEST_BYTES = 4 * 1024 * 1024
# Repositories whose token scope is remembered (the tokens themselves are bounded in tokens.py).
MAX_NAMES = 4096
_ACCEPTABLE = re.compile(r"[\x21-\x7e][\x20-\x7e]*")


@dataclass(frozen=True)
class FetchedManifest:
    body: bytes  # at most MAX_MANIFEST_BYTES
    media_type: str  # the answer's Content-Type ("" if none)
    digest: str | None  # its Docker-Content-Digest, as given: the caller verifies


@dataclass(frozen=True)
class ManifestHead:
    digest: str | None
    media_type: str
    size: int | None


class UpstreamBlob:
    """A blob's answer, open: its size if given (unbounded here) and its bytes as they arrive."""

    def __init__(self, response: httpx.Response, timeout: float) -> None:
        self.size: int | None = content_length(response)
        self._response, self._timeout = response, timeout

    async def chunks(self) -> AsyncIterator[bytes]:
        """The raw bytes (no decoding), each read within the client's timeout."""
        with network_errors(describe(self._response.request.url), self._timeout):
            async for chunk in self._response.aiter_raw():
                yield chunk


def _basic(credentials: Credentials) -> str:
    username, password = credentials.username, credentials.password
    if ":" in username:
        raise ValueError("an upstream username may not contain ':' (Basic authentication)")
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode("ascii")


def _credentials_in(basic: str) -> Credentials:
    """The credentials a Basic header of `_basic` carries (a username holds no ':')."""
    username, _, password = base64.b64decode(basic.removeprefix("Basic ")).decode().partition(":")
    return Credentials(username, password)


def _accept(accept: Sequence[str]) -> dict[str, str]:
    kept = [value for value in accept if _ACCEPTABLE.fullmatch(value)]
    return {"Accept": ", ".join(kept)} if kept else {}


def _refusing_jar() -> http.cookiejar.CookieJar:
    # Registries need no cookies; an upstream setting new ones on every answer must not
    # grow a jar for the client's life.
    return http.cookiejar.CookieJar(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))


class UpstreamClient:
    def __init__(
        self,
        url: str,
        *,
        username: str | None = None,
        password: str | None = None,
        credentials: CredentialSource | None = None,
        timeout: float = 30.0,
        ca_file: Path | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        try:
            base = httpx.URL(url.rstrip("/"))
        except httpx.InvalidURL:
            raise ValueError("an upstream URL is http(s)://host[:port][/path]") from None
        if base.scheme not in ("http", "https") or not base.host or base.userinfo or base.query:
            raise ValueError("an upstream URL is http(s)://host[:port][/path], no user or query")
        if (username is None) != (password is None):
            raise ValueError("an upstream's username and password come together")
        if credentials is not None and username is not None:
            raise ValueError("an upstream's credentials come from a source or are given, not both")
        if credentials is None:
            given = (
                None if username is None or password is None else Credentials(username, password)
            )
            if given is not None:
                _basic(given)  # a username Basic cannot carry is refused here, not at first use
            credentials = StaticCredentials(given)
        self._base, self._home = str(base), origin_of(base)
        # The client owns its source: closed with it.
        self._credentials = credentials
        self._timeout = timeout
        verify = ssl.create_default_context(cafile=str(ca_file)) if ca_file is not None else True
        self._http = httpx.AsyncClient(
            verify=verify,
            timeout=timeout,
            trust_env=False,
            headers={"Accept-Encoding": "identity"},
            cookies=_refusing_jar(),
        )
        self._tokens = Tokens(self._request_token, clock=clock)
        # name -> the token key its last Bearer challenge named
        self._scopes: Cache[str, TokenKey] = Cache(MAX_NAMES)
        self._basic_asked = False

    def __repr__(self) -> str:
        return f"UpstreamClient({self._base!r})"  # the URL alone: never its credentials

    async def get_manifest(
        self, name: str, reference: str, accept: Sequence[str]
    ) -> FetchedManifest:
        url = self._url(name, "manifests", _reference(reference))
        with network_errors(describe(url), self._timeout):
            async with asyncio.timeout(self._timeout):
                response = await self._exchange("GET", url, name, _accept(accept))
                try:
                    body = await read_capped(response, MAX_MANIFEST_BYTES)
                finally:
                    await response.aclose()
        headers = response.headers
        return FetchedManifest(
            body, headers.get("content-type", ""), headers.get("docker-content-digest")
        )

    async def head_manifest(self, name: str, reference: str, accept: Sequence[str]) -> ManifestHead:
        url = self._url(name, "manifests", _reference(reference))
        with network_errors(describe(url), self._timeout):
            async with asyncio.timeout(self._timeout):
                response = await self._exchange("HEAD", url, name, _accept(accept))
                await response.aclose()
        headers = response.headers
        return ManifestHead(
            headers.get("docker-content-digest"),
            headers.get("content-type", ""),
            content_length(response),
        )

    async def head_blob(self, name: str, digest: str) -> int | None:
        """Whether the upstream has the blob in that repository (UpstreamNotFound if not);
        its size if it says."""
        url = self._url(name, "blobs", str(Digest.parse(digest)))
        with network_errors(describe(url), self._timeout):
            async with asyncio.timeout(self._timeout):
                response = await self._exchange("HEAD", url, name, {})
                await response.aclose()
        return content_length(response)

    @contextlib.asynccontextmanager
    async def open_blob(self, name: str, digest: str) -> AsyncIterator[UpstreamBlob]:
        url = self._url(name, "blobs", str(Digest.parse(digest)))
        with network_errors(describe(url), self._timeout):
            async with asyncio.timeout(self._timeout):
                response = await self._exchange("GET", url, name, {})
        try:
            yield UpstreamBlob(response, self._timeout)
        finally:
            await response.aclose()

    async def aclose(self) -> None:
        self._tokens.close()
        await self._credentials.aclose()
        await self._http.aclose()

    def _url(self, name: str, kind: str, reference: str) -> httpx.URL:
        return httpx.URL(f"{self._base}/v2/{check_name(name)}/{kind}/{reference}")

    async def _exchange(
        self, method: str, url: httpx.URL, name: str, headers: dict[str, str]
    ) -> httpx.Response:
        """The answer to `method url`, a 200 opened as a stream, or the error it means."""
        sent = await self._known_authorization(name)
        response = await self._send(method, url, headers, sent)
        answered = renewed = False
        while response.status_code == 401 and origin_of(response.request.url) == self._home:
            challenge = ", ".join(response.headers.get_list("www-authenticate"))
            await response.aclose()
            again = None
            if not answered:
                answered = True
                again = await self._answer(challenge, url, name, sent)
            if again in (None, sent) and not renewed and _is_basic(sent):
                renewed = True
                again = await self._renewed(sent)
            if again is None or again == sent:
                raise UpstreamDenied(f"{describe(url)}: denied (401)")
            sent = again
            response = await self._send(method, url, headers, sent)
        error = refusal(response)
        if error is not None:
            await response.aclose()
            raise error
        return response

    async def _send(
        self, method: str, url: httpx.URL, headers: dict[str, str], authorization: str | None
    ) -> httpx.Response:
        return await send_following(
            self._http, method, url, headers, home=self._home, authorization=authorization
        )

    async def _known_authorization(self, name: str) -> str | None:
        key = self._scopes.get(name)
        token = None if key is None else self._tokens.held(key)
        if token is not None:
            return f"Bearer {token}"
        return await self._current_basic() if self._basic_asked else None

    async def _current_basic(self) -> str | None:
        credentials = await self._credentials()
        return None if credentials is None else _basic(credentials)

    async def _renewed(self, refused: str | None) -> str | None:
        """Basic with other credentials than the `refused` header's, if the source has any."""
        if refused is None:
            return None
        credentials = await self._credentials(_credentials_in(refused))
        fresh = None if credentials is None else _basic(credentials)
        return None if fresh == refused else fresh

    async def _answer(self, header: str, url: httpx.URL, name: str, sent: str | None) -> str | None:
        """What to send again after a 401 with `header`, having sent `sent`."""
        try:
            challenges = parse_challenges(header)
        except BadChallenge as exc:
            raise UpstreamInvalid(f"{describe(url)}: a malformed challenge ({exc})") from None
        bearer = _first(challenges, "bearer")
        if bearer is not None:
            key = token_key(bearer, name)
            self._scopes.put(name, key)
            if sent is not None and sent.startswith("Bearer "):
                self._tokens.forget(key, sent.removeprefix("Bearer "))
            return f"Bearer {await self._tokens.get(key)}"
        if _first(challenges, "basic") is not None:
            basic = await self._current_basic()
            if basic is not None:
                self._basic_asked = True
                return basic  # the one refused already, if it is `sent`: the caller decides
        raise UpstreamDenied(f"{describe(url)}: 401 with no challenge we can answer")

    async def _request_token(self, key: TokenKey) -> Token:
        with network_errors(describe(httpx.URL(key.realm)), self._timeout):
            async with asyncio.timeout(self._timeout):
                basic = await self._current_basic()
                try:
                    return await request_token(self._http, key, basic)
                except UpstreamDenied:
                    # The realm refused the credentials: a helper's may have changed since.
                    fresh = await self._renewed(basic)
                    if fresh is None:
                        raise
                return await request_token(self._http, key, fresh)


def _reference(reference: str) -> str:
    return str(Digest.parse(reference)) if is_digest(reference) else check_tag(reference)


def _is_basic(authorization: str | None) -> bool:
    return authorization is not None and authorization.startswith("Basic ")


def _first(challenges: list[Challenge], scheme: str) -> Challenge | None:
    return next((c for c in challenges if c.scheme == scheme), None)
