"""The token flow of a `Bearer` challenge: ask its realm for a token, keep it until it expires.

A token is asked for with `service` and `scope` (the challenge's own scope,
else pull on the repository), with the configured credentials as Basic
(else anonymously), and kept per (realm, service, scope) until its
`expires_in` (DEFAULT_LIFETIME when not given, at most MAX_LIFETIME) less a
margin, so it is not sent in its last seconds. Concurrent requests needing
the same token wait for one fetch. The realm's answer is bounded like any
other (MAX_ANSWER_BYTES, the client's deadline) and followed nowhere: a
redirect from a realm is no answer.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx

from authcore.cache import Cache
from registry_proxy.upstreams.answers import describe, read_capped, refusal
from registry_proxy.upstreams.challenge import Challenge
from registry_proxy.upstreams.errors import UpstreamInvalid

__all__ = [
    "DEFAULT_LIFETIME",
    "MAX_ANSWER_BYTES",
    "MAX_LIFETIME",
    "Token",
    "TokenKey",
    "Tokens",
    "request_token",
    "token_key",
]

MAX_ANSWER_BYTES = 64 * 1024
DEFAULT_LIFETIME = 60.0
MAX_LIFETIME = 3600.0
# At most this much of a token's life is given up, and at most a quarter of a short one.
MARGIN = 10.0
MAX_TOKENS = 1024
# What may follow "Bearer " in a header: visible ASCII, as a JWT or an opaque token is.
_TOKEN_VALUE = re.compile(r"[\x21-\x7e]+")


@dataclass(frozen=True)
class TokenKey:
    realm: str
    service: str
    scope: str


@dataclass(frozen=True)
class Token:
    value: str = field(repr=False)
    lifetime: float


def token_key(challenge: Challenge, name: str) -> TokenKey:
    """Where a `Bearer` challenge sends us for a token to pull `name`; UpstreamInvalid if nowhere."""
    realm = challenge.params.get("realm", "")
    try:
        url = httpx.URL(realm)
    except httpx.InvalidURL:
        raise UpstreamInvalid("the Bearer challenge's realm is no URL") from None
    if url.scheme not in ("http", "https") or not url.host or url.userinfo:
        raise UpstreamInvalid("the Bearer challenge's realm is no http(s) URL")
    scope = challenge.params.get("scope") or f"repository:{name}:pull"
    return TokenKey(realm, challenge.params.get("service", ""), scope)


async def request_token(http: httpx.AsyncClient, key: TokenKey, authorization: str | None) -> Token:
    """One token from the realm (the caller bounds the time); the upstream's errors as ours."""
    params = {"scope": key.scope} | ({"service": key.service} if key.service else {})
    headers = {"Accept": "application/json"}
    if authorization is not None:
        headers["Authorization"] = authorization
    request = http.build_request("GET", key.realm, params=params, headers=headers)
    response = await http.send(request, stream=True)
    try:
        error = refusal(response)
        if error is not None:
            raise error
        body = await read_capped(response, MAX_ANSWER_BYTES)
    finally:
        await response.aclose()
    return _read_answer(body, describe(request.url))


def _read_answer(body: bytes, what: str) -> Token:
    try:
        answer = json.loads(body)
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        raise UpstreamInvalid(f"{what}: the token answer is no JSON object")
    value = answer.get("token") or answer.get("access_token")
    if not isinstance(value, str) or _TOKEN_VALUE.fullmatch(value) is None:
        raise UpstreamInvalid(f"{what}: the token answer holds no token")
    expires_in = answer.get("expires_in")
    lifetime = DEFAULT_LIFETIME
    if isinstance(expires_in, int | float) and not isinstance(expires_in, bool) and expires_in > 0:
        lifetime = min(float(expires_in), MAX_LIFETIME)
    return Token(value, lifetime)


class Tokens:
    """The tokens one client holds, and the fetches under way (one per key)."""

    def __init__(
        self,
        fetch: Callable[[TokenKey], Awaitable[Token]],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch, self._clock = fetch, clock
        # key -> (token, the clock's time after which it is not sent)
        self._held: Cache[TokenKey, tuple[str, float]] = Cache(MAX_TOKENS)
        self._fetching: dict[TokenKey, asyncio.Task[str]] = {}

    def held(self, key: TokenKey) -> str | None:
        """The token for `key` if one is held and still good."""
        entry = self._held.get(key)
        if entry is None or self._clock() >= entry[1]:
            return None
        return entry[0]

    async def get(self, key: TokenKey) -> str:
        """A good token for `key`: the one held, else the one being fetched, else a new fetch."""
        held = self.held(key)
        if held is not None:
            return held
        task = self._fetching.get(key)
        if task is None:
            task = asyncio.ensure_future(self._renew(key))
            self._fetching[key] = task
            task.add_done_callback(lambda done: self._settled(key, done))
        # One waiter giving up (its own deadline) must not end the others' fetch.
        return await asyncio.shield(task)

    def forget(self, key: TokenKey, value: str) -> None:
        """Drop the token for `key` if it is `value` (the upstream refused it)."""
        entry = self._held.get(key)
        if entry is not None and entry[0] == value:
            self._held.pop(key)

    def close(self) -> None:
        for task in list(self._fetching.values()):
            task.cancel()

    async def _renew(self, key: TokenKey) -> str:
        asked = self._clock()
        token = await self._fetch(key)
        margin = min(MARGIN, token.lifetime / 4)
        self._held.put(key, (token.value, asked + token.lifetime - margin))
        return token.value

    def _settled(self, key: TokenKey, task: asyncio.Task[str]) -> None:
        if self._fetching.get(key) is task:
            del self._fetching[key]
        if not task.cancelled():
            # Retrieved here, so a failure nobody waited for any more is not logged as lost.
            task.exception()
